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
  { additionalProperties: false },
)

export type IpRestrictionConfig = Static<typeof IpRestrictionConfig>
