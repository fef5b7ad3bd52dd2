/**
 * Which targets of a service may be picked now: sets `state.selectable` on
 * each, so balancers only read a flag. Recomputed when health changes (active
 * verdicts, ejections and their expiry, draining), never per request.
 *
 * Rules (as Envoy and HAProxy users expect):
 * - a target is up when it is healthy (active checks), not ejected (passive
 *   checks) and not draining; a target with weight 0 or draining is never
 *   picked;
 * - the primaries that are up serve; backups serve only when no primary is up
 *   (HAProxy `backup`);
 * - panic (Envoy's panic threshold): when fewer than `panicThreshold`% of the
 *   non-draining primaries are up and no backup can take over, every
 *   non-draining primary is selectable again, so a few survivors are not
 *   crushed by the whole load (a dead one answers 502 quickly instead).
 *   Draining targets are left out of the count: draining is an operator's
 *   choice, not a sign of failure. With backups up there is no panic: the
 *   surviving primaries serve, and the backups once none is left.
 *
 * Slow start counts from `state.upSince`, set here when a target starts
 * serving on its own merits: it becomes selectable and up after being either
 * not selectable or (kept selectable by panic) not up.
 */
import type { ServiceConfig } from '../config/types.ts'
import type { Target } from './target.ts'
import type { TargetState } from './target-state.ts'

export class Selection {
  readonly #targets: readonly Target[]
  readonly #panicThreshold: number
  /** Earliest ejection expiry still ahead; refresh() recomputes when it passes. */
  #nextChange = Number.POSITIVE_INFINITY
  /** True when the last update found too few primaries up and opened all of them. */
  panic = false
  /**
   * Per-target circuit breakers (breaker.ts) set this: an open target is down,
   * and stays out even in panic (its failure rate was measured, not guessed).
   */
  circuitOpen: ((target: Target) => boolean) | null = null

  constructor(targets: readonly Target[], config: Pick<ServiceConfig, 'panicThreshold'>) {
    this.#targets = targets
    this.#panicThreshold = config.panicThreshold
  }

  /**
   * This snapshot starts serving: the configured draining applies to the
   * target state, then the verdicts are computed. Not done at compile: the
   * state is shared with the snapshot still serving, and a reload that is
   * then refused must not change what that snapshot picks.
   */
  activate(now: number): void {
    for (const target of this.#targets) target.state.draining = target.drain
    this.update(now)
  }

  /** Cheap per-request check: recompute only when an ejection has run out. */
  refresh(now: number): void {
    if (now >= this.#nextChange) this.update(now)
  }

  /** Recompute every target's `selectable` from its state. */
  update(now: number): void {
    let next = Number.POSITIVE_INFINITY
    let primaries = 0
    let primariesUp = 0
    let backupsUp = 0
    const circuitOpen = this.circuitOpen
    for (const target of this.#targets) {
      const s = target.state
      if (s.ejectedUntil > now && s.ejectedUntil < next) next = s.ejectedUntil
      if (target.weight <= 0 || s.draining) continue
      const up = isUp(s, now) && !circuitOpen?.(target)
      if (!target.backup) {
        primaries++
        if (up) primariesUp++
      } else if (up) backupsUp++
    }
    const panic = backupsUp === 0 && primaries > 0 && primariesUp * 100 < primaries * this.#panicThreshold
    const backupsServe = primariesUp === 0 && !panic
    for (const target of this.#targets) {
      const s = target.state
      const open = circuitOpen?.(target) ?? false
      const up = isUp(s, now) && !open
      let selectable = false
      if (target.weight > 0 && !s.draining)
        selectable = target.backup ? backupsServe && up : up || (panic && !open)
      // Slow start counts from the moment a target serves on its own merits again.
      if (selectable && up && !(s.selectable && s.up)) s.upSince = now
      s.selectable = selectable
      s.up = up
    }
    this.panic = panic
    this.#nextChange = next
  }
}

function isUp(state: TargetState, now: number): boolean {
  return state.healthy && state.ejectedUntil <= now && !state.draining
}
