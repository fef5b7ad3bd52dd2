/**
 * Response-time tracking per target: a peak EWMA, as Finagle's `PeakEwma`
 * and linkerd (tower's `PeakEwma`) keep it, read by the ewma balancer and
 * by metrics.
 *
 * - A response slower than the current estimate replaces it at once (the
 *   "peak"): a target that turns slow is avoided from its first slow answer.
 * - A faster one is blended in with a weight that depends on the time since
 *   the last update, `1 - exp(-elapsed / DECAY_MS)`, so the estimate forgets
 *   at the same rate whatever the request rate.
 * - A failure counts as a response of at least FAILURE_PENALTY_MS: a target
 *   that refuses connections answers fast, and without a penalty it would
 *   look like the best target and draw all the traffic (a black hole).
 * - Readers decay the estimate towards zero while no response arrives
 *   (`currentLatency`), as Finagle and tower do on every read: a target that
 *   was slow once and stopped being picked is tried again after a while
 *   instead of being shunned forever.
 */
import type { AttemptOutcome } from './service.ts'
import type { Target } from './target.ts'
import type { TargetState } from './target-state.ts'

/** Time constant of the decay (Finagle's and linkerd's default: 10 s). */
export const LATENCY_DECAY_MS = 10_000
/** The least latency a failed attempt counts as. */
export const FAILURE_PENALTY_MS = 1_000

/** Observer for UpstreamService.report: folds one attempt's outcome into `state.latencyEwmaMs`. */
export function recordLatency(target: Target, outcome: AttemptOutcome, now: number): void {
  const latency =
    outcome.kind === 'failure'
      ? Math.max(outcome.latencyMs, FAILURE_PENALTY_MS)
      : Math.max(outcome.latencyMs, 0)
  updateLatency(target.state, latency, now)
}

export function updateLatency(state: TargetState, latencyMs: number, now: number): void {
  if (state.latencyUpdatedAt === 0 || latencyMs > state.latencyEwmaMs) {
    state.latencyEwmaMs = latencyMs
  } else {
    const keep = Math.exp(-Math.max(now - state.latencyUpdatedAt, 0) / LATENCY_DECAY_MS)
    state.latencyEwmaMs = state.latencyEwmaMs * keep + latencyMs * (1 - keep)
  }
  // 0 means "never updated"; a clock reading of exactly 0 is nudged so the first sample is not forgotten.
  state.latencyUpdatedAt = now === 0 ? Number.MIN_VALUE : now
}

/** The estimate as of `now`: decayed towards zero since the last response (0 when there is none). */
export function currentLatency(state: TargetState, now: number): number {
  if (state.latencyUpdatedAt === 0) return 0
  const idle = now - state.latencyUpdatedAt
  return idle <= 0 ? state.latencyEwmaMs : state.latencyEwmaMs * Math.exp(-idle / LATENCY_DECAY_MS)
}
