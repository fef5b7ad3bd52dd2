/**
 * Smooth weighted round robin, as nginx does it: every pick adds each
 * selectable target's weight to its running score, takes the highest, and
 * subtracts the total from the winner. Weights 5,1,1 give a a b a c a a
 * rather than a a a a a b c. Weights are slow-start weights, so a target
 * that has just come up is woven in gently rather than in a burst.
 */
import type { Balancer } from '../balancer.ts'
import { effectiveWeight } from '../slow-start.ts'
import type { Target } from '../target.ts'
import { isCandidate } from './candidates.ts'

export function roundRobin(targets: readonly Target[], slowStartMs = 0): Balancer {
  const scores = new Float64Array(targets.length)
  return {
    pick(_ctx, exclude) {
      const now = slowStartMs > 0 ? performance.now() : 0
      let best = -1
      let total = 0
      for (let i = 0; i < targets.length; i++) {
        const target = targets[i]
        if (!isCandidate(target, exclude)) continue
        const weight = effectiveWeight(target, now, slowStartMs)
        scores[i] += weight
        total += weight
        if (best === -1 || scores[i] > scores[best]) best = i
      }
      if (best === -1) return null
      scores[best] -= total
      return targets[best]
    },
  }
}
