/**
 * ip-restriction: allow and deny lists of addresses and CIDR ranges, checked
 * against the client address, which is the TCP peer unless that peer is a
 * trusted proxy (global.trustedProxies), in which case it comes from X-Forwarded-For.
 */
import { isIP } from 'node:net'
import { GatehouseError } from '../../errors.ts'
import { createIpMatcher } from '../../net/ip.ts'
import { definePlugin } from '../../pipeline/plugin.ts'
import { IpRestrictionConfig } from './schema.ts'

export default definePlugin<IpRestrictionConfig>({
  name: 'ip-restriction',
  schema: IpRestrictionConfig,
  validate(config) {
    const problems: [(string | number)[], string][] = []
    for (const key of ['allow', 'deny'] as const)
      config[key]?.forEach((entry, i) => {
        const [address, bits, extra] = entry.split('/')
        const family = isIP(address)
        const max = family === 4 ? 32 : 128
        if (
          family === 0 ||
          extra !== undefined ||
          (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max))
        )
          problems.push([[key, i], `expected an IP address or CIDR range, got ${JSON.stringify(entry)}`])
      })
    if (!config.allow?.length && !config.deny?.length)
      problems.push([[], 'give at least one of allow or deny'])
    return problems
  },
  create(config) {
    const allow = createIpMatcher(config.allow ?? [])
    const deny = createIpMatcher(config.deny ?? [])
    const detail = config.message ?? 'Your address is not allowed'
    return {
      onRequest(ctx) {
        if (deny.has(ctx.clientIp) || (!allow.empty && !allow.has(ctx.clientIp)))
          throw new GatehouseError('GH_FORBIDDEN', detail)
      },
    }
  },
})
