/**
 * Latency-aware balancing with a peak EWMA, as Finagle's `P2CPeakEwma` and
 * linkerd do it: draw two distinct targets (weighted, see random.ts) and send
 * the request to the cheaper one, where
 *
 *     cost = peak-EWMA latency x (requests in flight + 1) / weight
 *
 * The latency estimate (upstreams/latency.ts) jumps up on a slow response
 * and decays while a target is not answering, so a target that turns slow is
 * avoided at once and tried again later. Multiplying by the load in flight
 * keeps a fast target from being flooded until it, too, is slow.
 *
 * A target with no estimate yet costs 0 while it has nothing in flight (so
 * it gets one request to measure) and a penalty once it has (so it does not
 * swallow a burst before its first answer says how fast it is): Finagle's
 * rule, with its penalty of roughly 2^47.
 */
import type { Balancer } from '../balancer.ts'
import { currentLatency } from '../latency.ts'
import type { Target } from '../target.ts'
import { WeightedDraw } from './candidates.ts'

/** Cost of a target with requests in flight and no latency measured yet. */
const UNMEASURED_PENALTY = 2 ** 47

export function ewma(targets: readonly Target[], slowStartMs = 0): Balancer {
  const draw = new WeightedDraw(targets, slowStartMs)
  const weights = draw.weights
  return {
    pick(_ctx, exclude) {
      const now = performance.now()
      const count = draw.fill(exclude, now)
      if (count === 0) return null
      const first = draw.draw(-1)
      if (count === 1) return targets[first]
      const second = draw.draw(first)
      return cost(targets[second], now) * weights[first] < cost(targets[first], now) * weights[second]
        ? targets[second]
        : targets[first]
    },
  }
}

/** Latency x (inflight + 1), before dividing by weight. */
function cost(target: Target, now: number): number {
  const state = target.state
  const latency = currentLatency(state, now)
  if (latency === 0 && state.inflight > 0) return UNMEASURED_PENALTY + state.inflight
  return latency * (state.inflight + 1)
}
