/**
 * Power of two random choices (Mitzenmacher), weighted: draw two distinct
 * targets with probability proportional to their (slow-start) weights and
 * send the request to the one with fewer requests in flight per unit of
 * weight; on a tie the first drawn wins, so an idle service spreads by
 * weight. Two choices instead of one cut the worst-case load from
 * O(log n / log log n) to O(log log n) above average, and unlike least
 * connections the picks of many gateway instances do not all rush to the
 * same momentarily idle target.
 */
import type { Balancer } from '../balancer.ts'
import type { Target } from '../target.ts'
import { WeightedDraw } from './candidates.ts'

export function random(targets: readonly Target[], slowStartMs = 0): Balancer {
  const draw = new WeightedDraw(targets, slowStartMs)
  const weights = draw.weights
  return {
    pick(_ctx, exclude) {
      const count = draw.fill(exclude, slowStartMs > 0 ? performance.now() : 0)
      if (count === 0) return null
      const first = draw.draw(-1)
      if (count === 1) return targets[first]
      const second = draw.draw(first)
      // inflight/weight, compared without division.
      return targets[second].state.inflight * weights[first] < targets[first].state.inflight * weights[second]
        ? targets[second]
        : targets[first]
    },
  }
}
