/**
 * Smooth weighted round robin, as nginx does it: every pick adds each
 * target's weight to its running score, takes the highest, and subtracts the
 * total from the winner. Weights 5,1,1 give a a b a c a a rather than a a a a a b c.
 */
import type { Balancer } from '../balancer.ts'
import type { Target } from '../target.ts'

export function roundRobin(targets: readonly Target[]): Balancer {
  const live = targets.filter((target) => target.weight > 0)
  const scores = new Float64Array(live.length)
  const total = live.reduce((sum, target) => sum + target.weight, 0)
  return {
    pick() {
      if (live.length === 0) return null
      let best = 0
      for (let i = 0; i < live.length; i++) {
        scores[i] += live[i].weight
        if (scores[i] > scores[best]) best = i
      }
      scores[best] -= total
      return live[best]
    },
  }
}
