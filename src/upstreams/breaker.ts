/**
 * Circuit breakers (as resilience4j and Envoy/Istio users know them): stop
 * sending to a service, or to one target, that fails most of what it gets,
 * and try again a little at a time.
 *
 * - closed: outcomes are counted in a rolling window of BUCKETS buckets. When
 *   at least `minRequests` finished within the window and the share of
 *   failures reaches `failureRate`%, the breaker opens. A failure is a
 *   connection failure, reset, timeout or unusable response
 *   (GH_UPSTREAM_UNREACHABLE / _TIMEOUT / _BAD_RESPONSE), or a response whose
 *   status is in `statuses` (502, 503, 504 by default). Every attempt counts,
 *   retries included.
 * - open: no request is sent; the client gets 503 GH_CIRCUIT_OPEN with
 *   Retry-After (seconds until half-open, rounded up). Outcomes of requests
 *   sent before the breaker opened are ignored.
 * - half-open (after `openFor`): up to `halfOpenRequests` trials are in flight
 *   at once. Once that many trials succeeded the breaker closes with an empty
 *   window; the first failed trial opens it again. A trial whose outcome
 *   never comes (the client went away and the attempt was cancelled) gives
 *   its slot back after `openFor`, so slots cannot leak.
 *
 * Per service, one breaker guards every request. Per target (`perTarget`),
 * each target has its own; an open target is taken out of the selection (it
 * stays out even in panic mode: panic is for guessing wrong about health, an
 * open breaker is a measured failure rate), and the service answers
 * GH_CIRCUIT_OPEN only when no other target can take the request.
 *
 * Times are milliseconds on the caller's clock (`performance.now()` unless a
 * test injects one).
 */
import type { CircuitBreakerConfig, ServiceConfig } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import { TARGET_FAILURES } from './health/passive.ts'
import type { Selection } from './selection.ts'
import type { AttemptOutcome } from './service.ts'
import type { Target } from './target.ts'

export type CircuitState = 'closed' | 'open' | 'half-open'

/** The rolling window's resolution: a bucket is window / BUCKETS wide. */
export const BUCKETS = 10

/** One breaker as metrics and the admin API see it. */
export interface CircuitView {
  /** Which breaker governs the target: the service's, or the target's own. */
  scope: 'service' | 'target'
  state: CircuitState
  /** Attempts and failures that finished within the rolling window (closed only). */
  requests: number
  failures: number
  /** Open: time until half-open; otherwise 0. */
  retryInMs: number
  /** Half-open: trials in flight and trials that succeeded so far. */
  trials: number
  trialSuccesses: number
}

interface Trial {
  /** The target the trial went to; null for a per-target breaker (it has only one). */
  readonly target: Target | null
  readonly at: number
}

/** One state machine: closed -> open -> half-open -> closed | open. */
export class CircuitBreaker {
  readonly config: CircuitBreakerConfig
  state: CircuitState = 'closed'
  /** Open: when it turns half-open. */
  openUntil = 0
  readonly #bucketMs: number
  /** Per bucket: which bucket number (time / bucketMs) it holds now, and its counts. */
  readonly #epochs = new Float64Array(BUCKETS).fill(Number.NEGATIVE_INFINITY)
  readonly #totals = new Uint32Array(BUCKETS)
  readonly #failures = new Uint32Array(BUCKETS)
  readonly #trials: Trial[] = []
  #trialSuccesses = 0
  readonly #onChange: (breaker: CircuitBreaker, now: number) => void

  constructor(
    config: CircuitBreakerConfig,
    onChange: (breaker: CircuitBreaker, now: number) => void = () => {},
  ) {
    this.config = config
    this.#bucketMs = Math.max(1, config.windowMs / BUCKETS)
    this.#onChange = onChange
  }

  /**
   * May a request go now? Turns open into half-open once `openFor` has run
   * out and frees the slots of trials that never reported. Call `admitted`
   * right after for the request that goes.
   */
  canAdmit(now: number): boolean {
    if (this.state === 'closed') return true
    if (this.state === 'open') {
      if (now < this.openUntil) return false
      this.#halfOpen(now)
    }
    this.#expireTrials(now)
    return this.#trials.length < this.config.halfOpenRequests
  }

  /** A request was sent to `target` (after canAdmit said yes); half-open counts it as a trial. */
  admitted(target: Target | null, now: number): void {
    if (this.state === 'half-open') this.#trials.push({ target, at: now })
  }

  /** Turns open into half-open when due (per-target breakers: the target must become selectable again). */
  poll(now: number): void {
    if (this.state === 'open' && now >= this.openUntil) this.#halfOpen(now)
  }

  /** How an attempt ended: true failed, false succeeded, null neither (not the target's doing). */
  record(target: Target | null, failed: boolean | null, now: number): void {
    if (this.state === 'open') return
    if (this.state === 'half-open') {
      // Only a trial's outcome counts; a request sent before the breaker opened says nothing new.
      const i = this.#trials.findIndex((trial) => trial.target === target)
      if (i === -1) return
      this.#trials.splice(i, 1)
      if (failed === true) this.#open(now)
      else if (failed === false && ++this.#trialSuccesses >= this.config.halfOpenRequests) this.#close(now)
      return
    }
    if (failed === null) return
    const bucket = Math.floor(now / this.#bucketMs)
    const slot = bucket % BUCKETS
    if (this.#epochs[slot] !== bucket) {
      this.#epochs[slot] = bucket
      this.#totals[slot] = 0
      this.#failures[slot] = 0
    }
    this.#totals[slot]++
    if (!failed) return
    this.#failures[slot]++
    const { requests, failures } = this.#counts(now)
    if (requests >= this.config.minRequests && failures * 100 >= this.config.failureRate * requests)
      this.#open(now)
  }

  /**
   * Milliseconds a refused client should wait: until half-open; 0 otherwise
   * (half-open with every slot taken: trials usually end within a request's
   * time, so the soonest retry is the best guess).
   */
  retryInMs(now: number): number {
    return this.state === 'open' ? Math.max(0, this.openUntil - now) : 0
  }

  describe(scope: CircuitView['scope'], now: number): CircuitView {
    const closed = this.state === 'closed'
    const { requests, failures } = closed ? this.#counts(now) : { requests: 0, failures: 0 }
    return {
      scope,
      state: this.state,
      requests,
      failures,
      retryInMs: this.retryInMs(now),
      trials: this.#trials.length,
      trialSuccesses: this.#trialSuccesses,
    }
  }

  /** Takes over another breaker's state (a reload that keeps the target and the config). */
  adopt(other: CircuitBreaker): void {
    this.state = other.state
    this.openUntil = other.openUntil
    this.#epochs.set(other.#epochs)
    this.#totals.set(other.#totals)
    this.#failures.set(other.#failures)
    this.#trials.push(...other.#trials)
    this.#trialSuccesses = other.#trialSuccesses
  }

  /** Attempts and failures in the buckets still inside the window. */
  #counts(now: number): { requests: number; failures: number } {
    const oldest = Math.floor(now / this.#bucketMs) - BUCKETS
    let requests = 0
    let failures = 0
    for (let i = 0; i < BUCKETS; i++) {
      if (this.#epochs[i] <= oldest) continue
      requests += this.#totals[i]
      failures += this.#failures[i]
    }
    return { requests, failures }
  }

  #expireTrials(now: number): void {
    const trials = this.#trials
    while (trials.length > 0 && trials[0].at + this.config.openForMs <= now) trials.shift()
  }

  #open(now: number): void {
    this.state = 'open'
    this.openUntil = now + this.config.openForMs
    this.#trials.length = 0
    this.#onChange(this, now)
  }

  #halfOpen(now: number): void {
    this.state = 'half-open'
    this.#trials.length = 0
    this.#trialSuccesses = 0
    this.#onChange(this, now)
  }

  #close(now: number): void {
    this.state = 'closed'
    this.#trials.length = 0
    this.#trialSuccesses = 0
    this.#epochs.fill(Number.NEGATIVE_INFINITY)
    this.#onChange(this, now)
  }
}

/**
 * A service's breakers wired into its choose/report: the service-wide one,
 * or one per target (keyed by origin, so a reload that keeps a target and the
 * breaker config keeps its breaker).
 */
export class ServiceCircuit {
  readonly config: CircuitBreakerConfig
  readonly #serviceName: string
  readonly #service: CircuitBreaker | null
  readonly #byTarget: Map<Target, CircuitBreaker> | null
  /** Per-target breakers: the earliest time an open one turns half-open. */
  #nextChange = Number.POSITIVE_INFINITY
  readonly #failingStatus = new Uint8Array(600)

  constructor(
    service: Pick<ServiceConfig, 'name'> & { circuitBreaker: CircuitBreakerConfig },
    targets: readonly Target[],
    selection: Selection,
    previous: ServiceCircuit | null = null,
  ) {
    const config = service.circuitBreaker
    this.config = config
    this.#serviceName = service.name
    for (const status of config.statuses) if (status < 600) this.#failingStatus[status] = 1
    const same = previous !== null && JSON.stringify(previous.config) === JSON.stringify(config)
    if (!config.perTarget) {
      this.#service = same && previous.#service !== null ? previous.#service : new CircuitBreaker(config)
      this.#byTarget = null
      return
    }
    this.#service = null
    const onChange = (_: CircuitBreaker, now: number) => {
      this.#scheduleHalfOpen()
      selection.update(now)
    }
    const kept = new Map<string, CircuitBreaker>()
    if (same) for (const [target, breaker] of previous.#byTarget ?? []) kept.set(target.origin, breaker)
    this.#byTarget = new Map()
    for (const target of targets) {
      const old = kept.get(target.origin)
      // A kept breaker reports to this snapshot's selection from now on.
      const breaker = new CircuitBreaker(config, onChange)
      if (old !== undefined) breaker.adopt(old)
      this.#byTarget.set(target, breaker)
    }
    const byTarget = this.#byTarget
    selection.circuitOpen = (target) => byTarget.get(target)?.state === 'open'
    this.#scheduleHalfOpen()
  }

  /**
   * The target for this attempt from `pick`, or null when none is available.
   * A first attempt that a breaker refuses throws GH_CIRCUIT_OPEN; a retry
   * (`exclude` not empty) gets null instead, so the client sees the failure
   * it already had rather than a 503 (and the proxy's pool callbacks, where
   * retries are chosen, never see a throw).
   */
  choose(
    now: number,
    exclude: ReadonlySet<Target> | undefined,
    pick: (exclude: ReadonlySet<Target> | undefined) => Target | null,
  ): Target | null {
    const retry = exclude !== undefined && exclude.size > 0
    const service = this.#service
    if (service !== null) {
      if (!service.canAdmit(now)) {
        if (retry) return null
        const why =
          service.state === 'open'
            ? 'its circuit breaker is open'
            : 'its circuit breaker is half-open and every trial slot is taken'
        throw this.#refuse(why, service.retryInMs(now))
      }
      const target = pick(exclude)
      if (target !== null) service.admitted(target, now)
      return target
    }
    const byTarget = this.#byTarget!
    if (now >= this.#nextChange) for (const breaker of byTarget.values()) breaker.poll(now)
    let skip = exclude
    let waitMs = Number.POSITIVE_INFINITY
    for (;;) {
      const target = pick(skip)
      if (target === null) break
      const breaker = byTarget.get(target)!
      if (breaker.canAdmit(now)) {
        breaker.admitted(null, now)
        return target
      }
      // Half-open with every trial slot taken: another target, if there is one.
      waitMs = Math.min(waitMs, breaker.retryInMs(now))
      const next = new Set(skip)
      next.add(target)
      skip = next
    }
    // Nothing to pick: say so as an open circuit when a breaker is why.
    for (const [target, breaker] of byTarget)
      if (breaker.state === 'open' && !exclude?.has(target)) waitMs = Math.min(waitMs, breaker.retryInMs(now))
    if (waitMs === Number.POSITIVE_INFINITY || retry) return null
    throw this.#refuse(
      'the circuit breakers of its available targets are open or have no trial slot free',
      waitMs,
    )
  }

  report(target: Target, outcome: AttemptOutcome, now: number): void {
    const failed =
      outcome.kind === 'response'
        ? outcome.status < 600 && this.#failingStatus[outcome.status] === 1
        : TARGET_FAILURES.has(outcome.error.code)
          ? true
          : null
    if (this.#service !== null) this.#service.record(target, failed, now)
    else this.#byTarget!.get(target)?.record(null, failed, now)
  }

  /** The breaker that governs `target`, as a plain view. */
  describe(target: Target, now: number): CircuitView | null {
    if (this.#service !== null) return this.#service.describe('service', now)
    return this.#byTarget!.get(target)?.describe('target', now) ?? null
  }

  /** The service-wide breaker's view; null when breakers are per target. */
  describeService(now: number): CircuitView | null {
    return this.#service?.describe('service', now) ?? null
  }

  #scheduleHalfOpen(): void {
    let next = Number.POSITIVE_INFINITY
    for (const breaker of this.#byTarget!.values())
      if (breaker.state === 'open' && breaker.openUntil < next) next = breaker.openUntil
    this.#nextChange = next
  }

  #refuse(why: string, waitMs: number): GatehouseError {
    // RFC 9110 §10.2.3: delay-seconds, a whole number; at least 1 so clients do not retry at once.
    const seconds = Math.max(1, Math.ceil(waitMs / 1000))
    return new GatehouseError(
      'GH_CIRCUIT_OPEN',
      `Service ${this.#serviceName} is not taking requests: ${why}; retry in ${seconds}s`,
      { headers: { 'retry-after': String(seconds) } },
    )
  }
}

/** The service's breakers, or null when `circuitBreaker` is not configured; `previous`: the same service in the snapshot being replaced. */
export function createCircuit(
  service: ServiceConfig,
  targets: readonly Target[],
  selection: Selection,
  previous: ServiceCircuit | null,
): ServiceCircuit | null {
  const config = service.circuitBreaker
  if (config === null) return null
  return new ServiceCircuit({ name: service.name, circuitBreaker: config }, targets, selection, previous)
}
