/**
 * ip-restriction: allow and deny lists of addresses and CIDR ranges, checked
 * against the client address, which is the TCP peer unless that peer is a
 * trusted proxy (global.trustedProxies), in which case it comes from X-Forwarded-For.
 */
import { GatehouseError } from '../../errors.ts'
import { createIpMatcher, isIpOrCidr } from '../../net/ip.ts'
import { definePlugin } from '../../pipeline/plugin.ts'
import { IpRestrictionConfig } from './schema.ts'

export default definePlugin<IpRestrictionConfig>({
  name: 'ip-restriction',
  schema: IpRestrictionConfig,
  validate(config) {
    const problems: [(string | number)[], string][] = []
    for (const key of ['allow', 'deny'] as const)
      config[key]?.forEach((entry, i) => {
        if (!isIpOrCidr(entry))
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
