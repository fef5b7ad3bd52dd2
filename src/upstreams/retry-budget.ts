/**
 * The retry budget of one service, as Envoy's retry budgets: retries in
 * flight may be at most `percent` of the service's requests in flight, plus
 * a floor of `min` that is always allowed (so a quiet service still gets its
 * few retries). When every target fails, the budget is what keeps retries
 * from multiplying the load on them: the requests over it get the failure.
 *
 * Requests in flight are counted without touching the plain proxy path: a
 * request that cannot be retried has exactly one try, already counted in its
 * target's `state.inflight`. A request that can be (an Exchange in
 * forward.ts) is counted here from its first try to its end, backoff
 * included, and its tries are taken out of the targets' sum so that it
 * counts once. A retry counts from the moment it is admitted (its backoff
 * included) until its try ends.
 */
import type { RetryConfig } from '../config/types.ts'
import type { Target } from './target.ts'

export class RetryBudget {
  readonly #config: RetryConfig
  /** Retries admitted and not yet ended (in backoff or in their try). */
  retrying = 0
  /** Requests that may retry (Exchanges) in flight. */
  requests = 0
  /** Tries of those requests in flight (also counted in their targets' inflight). */
  tries = 0

  /** Takes the service's retry config, read only when a retry is asked for. */
  constructor(config: RetryConfig) {
    this.#config = config
  }

  /** Takes one retry out of the budget; false when it is spent. Every true is matched by one release(). */
  acquire(targets: readonly Target[]): boolean {
    if (this.retrying >= this.allowed(targets)) return false
    this.retrying++
    return true
  }

  release(): void {
    this.retrying--
  }

  /** Retries that may be in flight now. */
  allowed(targets: readonly Target[]): number {
    let inflight = 0
    for (const target of targets) inflight += target.state.inflight
    const requests = Math.max(0, inflight - this.tries) + this.requests
    const { percent, min } = this.#config.budget
    return Math.max(min, Math.floor((requests * percent) / 100))
  }
}
