import { type Static, Type } from '@sinclair/typebox'

export const IpRestrictionConfig = Type.Object(
  {
    allow: Type.Optional(
      Type.Array(Type.String(), {
        description: 'Addresses or CIDR ranges let in; when set, every other client is refused.',
      }),
    ),
    deny: Type.Optional(
      Type.Array(Type.String(), { description: 'Addresses or CIDR ranges refused; deny wins over allow.' }),
    ),
    message: Type.Optional(
      Type.String({ description: 'Detail of the 403 reply. Default "Your address is not allowed".' }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'Refuses clients by address with 403: allow and deny lists of addresses and CIDR ranges, checked against the client address (taken from X-Forwarded-For only when the peer is in global.trustedProxies). Give at least one of allow or deny.',
  },
)

export type IpRestrictionConfig = Static<typeof IpRestrictionConfig>
