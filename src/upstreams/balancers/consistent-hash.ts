/**
 * Consistent hashing on a configured key (client address, path, header,
 * cookie or query parameter; see upstreams/hash-key.ts for the fallback when
 * a request lacks it) over a ketama ring (see ring.ts for why a ring rather
 * than Maglev). A key stays on its target while the target is selectable;
 * when it is not, or a retry already tried it, the key walks on to the next
 * target on the ring, and comes back when the target does.
 */
import type { HashKeyConfig } from '../../config/types.ts'
import type { Balancer } from '../balancer.ts'
import { hashKeyOf } from '../hash-key.ts'
import type { Target } from '../target.ts'
import { HashRing, hashString } from './ring.ts'

export function consistentHash(targets: readonly Target[], key: HashKeyConfig, slowStartMs = 0): Balancer {
  const ring = new HashRing(targets, slowStartMs)
  return {
    pick(ctx, exclude) {
      return ring.pick(hashString(hashKeyOf(ctx, key)), exclude)
    },
  }
}
