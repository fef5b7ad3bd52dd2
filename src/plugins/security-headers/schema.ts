import { type Static, Type } from '@sinclair/typebox'

export const SecurityHeadersConfig = Type.Object(
  {
    hsts: Type.Optional(
      Type.Union(
        [
          Type.Literal(false),
          Type.Object(
            {
              maxAge: Type.Optional(
                Type.Integer({ minimum: 0, description: 'Seconds. Default 15552000 (180 days).' }),
              ),
              includeSubDomains: Type.Optional(Type.Boolean({ description: 'Default true.' })),
              preload: Type.Optional(Type.Boolean({ description: 'Default false.' })),
            },
            { additionalProperties: false },
          ),
        ],
        { description: 'Strict-Transport-Security, sent on HTTPS only (RFC 6797 §7.2); false turns it off.' },
      ),
    ),
    contentTypeOptions: Type.Optional(
      Type.Boolean({ description: 'X-Content-Type-Options: nosniff. Default true.' }),
    ),
    frameOptions: Type.Optional(
      Type.Union([Type.Literal('DENY'), Type.Literal('SAMEORIGIN'), Type.Literal(false)], {
        description: 'X-Frame-Options. Default DENY; false turns it off.',
      }),
    ),
    referrerPolicy: Type.Optional(
      Type.Union([Type.String(), Type.Literal(false)], {
        description: 'Referrer-Policy. Default strict-origin-when-cross-origin; false turns it off.',
      }),
    ),
    contentSecurityPolicy: Type.Optional(
      Type.String({ description: 'Content-Security-Policy. Default not set.' }),
    ),
    override: Type.Optional(
      Type.Boolean({ description: 'Replace these headers when the target already set them. Default false.' }),
    ),
  },
  { additionalProperties: false },
)

export type SecurityHeadersConfig = Static<typeof SecurityHeadersConfig>
