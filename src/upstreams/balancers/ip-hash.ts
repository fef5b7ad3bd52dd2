/**
 * The client address picks the target: the whole address (`ctx.clientIp`,
 * which honours `trustedProxies` and X-Forwarded-For), hashed onto the same
 * ketama ring as consistent-hash (ring.ts). nginx's `ip_hash` instead takes
 * the first three octets modulo the target count, which sends whole /24s
 * together and remaps almost every client when a target is added; on the
 * ring, adding or removing one of N targets moves about 1/N of the clients.
 */
import type { Balancer } from '../balancer.ts'
import type { Target } from '../target.ts'
import { HashRing, hashString } from './ring.ts'

export function ipHash(targets: readonly Target[], slowStartMs = 0): Balancer {
  const ring = new HashRing(targets, slowStartMs)
  return {
    pick(ctx, exclude) {
      return ring.pick(hashString(ctx.clientIp), exclude)
    },
  }
}
