/**
 * Passive health checks (outlier ejection, as Envoy's outlier detection and
 * HAProxy's `observe layer7`): real traffic tells which target is failing.
 *
 * - A failure is a connection failure, a reset, a timeout or an unusable
 *   response (GH_UPSTREAM_UNREACHABLE / _TIMEOUT / _BAD_RESPONSE), or a
 *   response whose status is in `statuses`.
 * - `failures` of them within `window` eject the target for
 *   ejectionTime x 2^(ejections-1), capped at maxEjectionTime.
 * - At most `maxEjectedPercent` of the service's targets are ejected at once
 *   (at least one may be, as Envoy does), so a service-wide outage does not
 *   eject everything: then failures are what the client sees, not 503s.
 * - When the ejection runs out the target returns half-open: the first
 *   failure ejects it again at once, for twice as long; the first success
 *   closes it (ejections back to 0).
 * - Outcomes that arrive while the target is ejected (requests sent before
 *   the ejection) neither extend nor end it.
 *
 * The observer runs for every response: a success costs a few comparisons and
 * allocates nothing.
 */
import type { Logger } from 'pino'
import type { ServiceConfig } from '../../config/types.ts'
import type { ErrorCode } from '../../errors.ts'
import type { Selection } from '../selection.ts'
import type { AttemptOutcome, ServiceParts } from '../service.ts'
import type { Target } from '../target.ts'

/** Gatehouse errors that mean the target failed (others are Gatehouse's own, e.g. a plugin). */
export const TARGET_FAILURES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'GH_UPSTREAM_UNREACHABLE',
  'GH_UPSTREAM_TIMEOUT',
  'GH_UPSTREAM_BAD_RESPONSE',
])

/** Told of each ejection this thread decides (worker threads pass it on, so every thread ejects the target). */
export type EjectionListener = (service: string, target: Target, forMs: number) => void

export function passiveObservers(
  service: ServiceConfig,
  targets: readonly Target[],
  selection: Selection,
  logger: Logger | null = null,
  onEject: EjectionListener | null = null,
): ServiceParts['observers'] {
  const config = service.healthCheck.passive
  if (config === null) return []
  // A status table beats a Set lookup on the per-response path.
  const failingStatus = new Uint8Array(600)
  for (const status of config.statuses) failingStatus[status] = 1
  const maxEjected = maxEjectedTargets(targets.length, config.maxEjectedPercent)
  const log = logger?.child({ service: service.name }) ?? null

  const failed = (outcome: AttemptOutcome) =>
    outcome.kind === 'response'
      ? outcome.status < 600 && failingStatus[outcome.status] === 1
      : TARGET_FAILURES.has(outcome.error.code)

  /** Ejects `target` unless the cap is reached; true when it did. */
  const eject = (target: Target, now: number, outcome: AttemptOutcome): boolean => {
    if (ejectedCount(targets, now) >= maxEjected) return false
    const state = target.state
    state.ejections++
    const ms = Math.min(config.maxEjectionTimeMs, config.ejectionTimeMs * 2 ** (state.ejections - 1))
    state.ejectedUntil = now + ms
    state.recentFailures.length = 0
    selection.update(now)
    onEject?.(service.name, target, ms)
    log?.warn(
      {
        target: target.url,
        ejectedForMs: ms,
        ejections: state.ejections,
        last: outcome.kind === 'response' ? `status ${outcome.status}` : outcome.error.code,
      },
      'target ejected by passive health checks',
    )
    return true
  }

  return [
    (target, outcome, now) => {
      const state = target.state
      if (state.ejectedUntil > now) return
      if (!failed(outcome)) {
        // Half-open and it answered: closed again, the next ejection starts short.
        if (state.ejections !== 0) state.ejections = 0
        return
      }
      // Half-open (back from an ejection, no success yet): one failure is enough.
      if (state.ejections !== 0 && eject(target, now, outcome)) return
      const recent = state.recentFailures
      const windowStart = now - config.windowMs
      while (recent.length > 0 && recent[0] <= windowStart) recent.shift()
      recent.push(now)
      if (recent.length < config.failures) return
      // Refused by the cap: forget the oldest so the window stays bounded and the next failure tries again.
      if (!eject(target, now, outcome)) recent.shift()
    },
  ]
}

/** How many targets may be ejected at once: the share, but always one. */
export function maxEjectedTargets(targets: number, percent: number): number {
  return Math.max(1, Math.floor((targets * percent) / 100))
}

export function ejectedCount(targets: readonly Target[], now: number): number {
  let ejected = 0
  for (const target of targets) if (target.state.ejectedUntil > now) ejected++
  return ejected
}
