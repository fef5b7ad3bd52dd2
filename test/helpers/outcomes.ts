/** Attempt outcomes for unit tests of what observes them (passive health, breaker). */
import { GatehouseError } from '../../src/errors.ts'
import type { AttemptOutcome } from '../../src/upstreams/service.ts'

export const ok: AttemptOutcome = { kind: 'response', status: 200, latencyMs: 1 }
export const status500: AttemptOutcome = { kind: 'response', status: 500, latencyMs: 1 }
export const status503: AttemptOutcome = { kind: 'response', status: 503, latencyMs: 1 }
export const refused: AttemptOutcome = {
  kind: 'failure',
  error: new GatehouseError('GH_UPSTREAM_UNREACHABLE', 'refused'),
  latencyMs: 1,
}
export const timedOut: AttemptOutcome = {
  kind: 'failure',
  error: new GatehouseError('GH_UPSTREAM_TIMEOUT', 'slow'),
  latencyMs: 1,
}
