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
                Type.Integer({
                  minimum: 0,
                  description:
                    'How long browsers remember to use HTTPS, in seconds. Default 15552000 (180 days).',
                }),
              ),
              includeSubDomains: Type.Optional(
                Type.Boolean({
                  description: 'Add includeSubDomains: the policy covers every subdomain. Default true.',
                }),
              ),
              preload: Type.Optional(
                Type.Boolean({
                  description:
                    "Add preload, asking to be put on browsers' HSTS preload lists (needs includeSubDomains and a maxAge of a year or more). Default false.",
                }),
              ),
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
        description: 'X-Frame-Options; false turns it off. Default DENY.',
      }),
    ),
    referrerPolicy: Type.Optional(
      Type.Union([Type.String(), Type.Literal(false)], {
        description:
          'Referrer-Policy: one or more policy tokens, comma-separated; false turns it off. Default strict-origin-when-cross-origin.',
      }),
    ),
    contentSecurityPolicy: Type.Optional(
      Type.String({ description: 'Content-Security-Policy. Default not set.' }),
    ),
    override: Type.Optional(
      Type.Boolean({ description: 'Replace these headers when the target already set them. Default false.' }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'Adds the response headers browsers act on (Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, Referrer-Policy, Content-Security-Policy) to every response, local error replies included.',
  },
)

export type SecurityHeadersConfig = Static<typeof SecurityHeadersConfig>
