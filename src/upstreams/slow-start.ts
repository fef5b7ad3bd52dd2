/**
 * Slow start: a target that has just become able to take traffic (newly
 * added, recovered from a failed health check or an ejection) gets a share
 * that ramps linearly from 10% of its weight to the full weight over
 * `slowStartMs`, counted from `state.upSince` (set by the selection when the
 * target turns selectable). Starting at a floor rather than at zero is what
 * Envoy does (`min_weight_percent`, default 10%): a target at zero would get
 * no traffic at all, and the ramp would say nothing about how it copes.
 *
 * Every balancer reads weights through this function, so the ramp means the
 * same thing whichever algorithm a service uses.
 */
import type { Target } from './target.ts'

/** The share of its weight a target gets at the start of the ramp. */
export const SLOW_START_FLOOR = 0.1

/** The weight a balancer should use for `target` now (a fraction of `target.weight` while ramping). */
export function effectiveWeight(target: Target, now: number, slowStartMs: number): number {
  const weight = target.weight
  if (slowStartMs <= 0 || weight <= 0) return weight
  const upFor = now - target.state.upSince
  if (upFor >= slowStartMs) return weight
  if (upFor <= 0) return weight * SLOW_START_FLOOR
  return weight * (SLOW_START_FLOOR + (1 - SLOW_START_FLOOR) * (upFor / slowStartMs))
}
