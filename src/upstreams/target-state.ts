/**
 * What Gatehouse knows about one target, as one plain structure that the
 * balancers, health checks, metrics and (later) the admin API read. It lives
 * beside the target's pool and is carried over by a reload that keeps the
 * target, so health and ejections survive a config change.
 *
 * Times are milliseconds on the gateway's clock (`performance.now()` unless
 * a test injects one).
 */
import type { CircuitView } from './breaker.ts'
import type { Target } from './target.ts'

export class TargetState {
  /** Requests currently sent to this target. */
  inflight = 0
  /** The active checks' verdict; true until they say otherwise (and when there are none). */
  healthy = true
  /** Consecutive active-check results of the current kind (passes while unhealthy, failures while healthy). */
  streak = 0
  /** Passive health: ejected until this time; 0 when not ejected. */
  ejectedUntil = 0
  /** How many times in a row the target was ejected (the ejection time doubles each time). */
  ejections = 0
  /** Failure times within the passive window (oldest first). */
  readonly recentFailures: number[] = []
  /** No new requests; those in flight finish. */
  draining = false
  /**
   * Healthy, not ejected and not draining at the selection's last update.
   * Kept so the selection can tell when a target starts serving on its own
   * merits (slow start counts from then), even if panic mode had kept it
   * selectable while it was down.
   */
  up = true
  /** Why the last active check failed; null when it passed (or none ran yet). */
  lastCheckFailure: string | null = null
  /** When the target last became able to take traffic: slow start ramps its weight from here. */
  upSince: number
  /** Peak EWMA of response time in ms (0 before the first response). */
  latencyEwmaMs = 0
  latencyUpdatedAt = 0
  /**
   * The verdict balancers read: may this target be picked now? Kept by the
   * service's selection (upstreams/selection.ts) from health, ejection,
   * draining, backups and the panic threshold; never computed per request.
   */
  selectable = true

  constructor(now: number) {
    this.upSince = now
  }

  /** A snapshot for metrics and the admin API. */
  describe(now: number): TargetStateView {
    return {
      healthy: this.healthy,
      ejected: this.ejectedUntil > now,
      ejectedForMs: Math.max(0, this.ejectedUntil - now),
      draining: this.draining,
      selectable: this.selectable,
      inflight: this.inflight,
      latencyEwmaMs: this.latencyEwmaMs,
      upForMs: now - this.upSince,
      ejections: this.ejections,
      lastCheckFailure: this.lastCheckFailure,
    }
  }
}

export interface TargetStateView {
  healthy: boolean
  ejected: boolean
  ejectedForMs: number
  draining: boolean
  selectable: boolean
  inflight: number
  latencyEwmaMs: number
  upForMs: number
  /** Ejections in a row; above 0 while ejected and while half-open after one. */
  ejections: number
  lastCheckFailure: string | null
}

/** One target as metrics and the admin API see it: what it is, and its state now. */
export interface TargetView extends TargetStateView {
  url: string
  weight: number
  backup: boolean
  /** The circuit breaker that governs the target (the service's, or its own with `perTarget`); null without one. */
  circuit: CircuitView | null
}

/** The view of every target of one service, in config order; `circuitOf`: the service's breaker view of a target. */
export function describeTargets(
  targets: readonly Target[],
  now: number,
  circuitOf: (target: Target, now: number) => CircuitView | null = () => null,
): TargetView[] {
  return targets.map((target) => ({
    url: target.url,
    weight: target.weight,
    backup: target.backup,
    ...target.state.describe(now),
    circuit: circuitOf(target, now),
  }))
}
