/**
 * Weighted least connections, as nginx's `least_conn` does it: the target
 * with the fewest requests in flight per unit of (slow-start) weight wins;
 * targets tied on that ratio take turns by smooth weighted round robin. So
 * an idle service spreads exactly by weight (every target is at 0), and a
 * target that holds requests longer gets fewer new ones.
 *
 * "In flight" is `state.inflight`, counted by the proxy path per target and
 * shared by every service snapshot using that target, so a reload does not
 * forget the load.
 */
import type { Balancer } from '../balancer.ts'
import { effectiveWeight } from '../slow-start.ts'
import type { Target } from '../target.ts'
import { isCandidate } from './candidates.ts'

export function leastConnections(targets: readonly Target[], slowStartMs = 0): Balancer {
  /** This pick's weight per target (0: not a candidate). */
  const weights = new Float64Array(targets.length)
  /** Smooth round-robin scores among tied targets. */
  const scores = new Float64Array(targets.length)
  return {
    pick(_ctx, exclude) {
      const now = slowStartMs > 0 ? performance.now() : 0
      // Lowest inflight/weight, compared as inflight_a * weight_b < inflight_b * weight_a (no division).
      let leastInflight = -1
      let leastWeight = 1
      for (let i = 0; i < targets.length; i++) {
        const target = targets[i]
        if (!isCandidate(target, exclude)) {
          weights[i] = 0
          continue
        }
        const weight = effectiveWeight(target, now, slowStartMs)
        weights[i] = weight
        const inflight = target.state.inflight
        if (leastInflight === -1 || inflight * leastWeight < leastInflight * weight) {
          leastInflight = inflight
          leastWeight = weight
        }
      }
      if (leastInflight === -1) return null
      let best = -1
      let total = 0
      for (let i = 0; i < targets.length; i++) {
        const weight = weights[i]
        if (weight === 0 || targets[i].state.inflight * leastWeight !== leastInflight * weight) continue
        scores[i] += weight
        total += weight
        if (best === -1 || scores[i] > scores[best]) best = i
      }
      scores[best] -= total
      return targets[best]
    },
  }
}
