/**
 * A service as the proxy path sees it: `choose` a target for a request,
 * `report` how an attempt went, and `decorate` the response head. Behind
 * these three calls sit the selection (health, backups, panic), sticky
 * sessions, the balancer, passive health and latency tracking, so the proxy
 * path does not change when they do.
 */
import type { ServiceConfig } from '../config/types.ts'
import type { GatehouseError } from '../errors.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { ResponseHead } from '../pipeline/plugin.ts'
import type { Balancer } from './balancer.ts'
import type { CircuitView, ServiceCircuit } from './breaker.ts'
import { RetryBudget } from './retry-budget.ts'
import { Selection } from './selection.ts'
import type { Target } from './target.ts'

/** How one attempt to a target ended. */
export type AttemptOutcome =
  | { readonly kind: 'response'; readonly status: number; readonly latencyMs: number }
  | { readonly kind: 'failure'; readonly error: GatehouseError; readonly latencyMs: number }

/** The parts a service is made of; optional ones are null when not configured. */
export interface ServiceParts {
  balancer: Balancer
  /** Sticky sessions: the pinned target for a request, and pinning on the response. */
  sticky: {
    find(ctx: RequestContext): Target | null
    pin(ctx: RequestContext, target: Target, head: ResponseHead): void
  } | null
  /** Observers of attempt outcomes (passive health, latency). */
  observers: readonly ((target: Target, outcome: AttemptOutcome, now: number) => void)[]
  /** The circuit breaker(s); absent or null when not configured. */
  circuit?: ServiceCircuit | null
}

export class UpstreamService {
  readonly config: ServiceConfig
  readonly targets: readonly Target[]
  readonly balancer: Balancer
  readonly selection: Selection
  /** Caps retries to a share of the requests in flight (src/upstreams/retry-budget.ts). */
  readonly retryBudget: RetryBudget
  readonly #sticky: ServiceParts['sticky']
  readonly #observers: ServiceParts['observers']
  readonly #circuit: ServiceCircuit | null

  constructor(
    config: ServiceConfig,
    targets: readonly Target[],
    parts: (selection: Selection) => ServiceParts,
  ) {
    this.config = config
    this.targets = targets
    this.selection = new Selection(targets, config)
    this.retryBudget = new RetryBudget(config.retries)
    const built = parts(this.selection)
    this.balancer = built.balancer
    this.#sticky = built.sticky
    this.#observers = built.observers
    this.#circuit = built.circuit ?? null
  }

  /**
   * The target for this attempt, or null when none can take it (503). `exclude`: targets already tried.
   * Throws GatehouseError GH_CIRCUIT_OPEN (503, Retry-After) when a circuit breaker refuses a first
   * attempt; a retry (`exclude` not empty) that a breaker refuses gets null.
   */
  choose(ctx: RequestContext, exclude?: ReadonlySet<Target>): Target | null {
    const now = performance.now()
    this.selection.refresh(now)
    if (this.#circuit !== null) return this.#circuit.choose(now, exclude, (skip) => this.#pick(ctx, skip))
    return this.#pick(ctx, exclude)
  }

  #pick(ctx: RequestContext, exclude: ReadonlySet<Target> | undefined): Target | null {
    if (this.#sticky !== null) {
      const pinned = this.#sticky.find(ctx)
      if (pinned?.state.selectable && !exclude?.has(pinned)) return pinned
    }
    return this.balancer.pick(ctx, exclude)
  }

  /** The sticky part, or null; a reload hands it to the next snapshot's service of the same name (its address table). */
  get sticky(): ServiceParts['sticky'] {
    return this.#sticky
  }

  /** The circuit part, or null; a reload hands it to the next snapshot's service of the same name (its breakers). */
  get circuit(): ServiceCircuit | null {
    return this.#circuit
  }

  /** The circuit breaker that governs `target` (the service's or its own), or null without one. */
  describeCircuit(target: Target, now: number): CircuitView | null {
    return this.#circuit?.describe(target, now) ?? null
  }

  report(target: Target, outcome: AttemptOutcome): void {
    if (this.#observers.length === 0 && this.#circuit === null) return
    const now = performance.now()
    for (const observe of this.#observers) observe(target, outcome, now)
    this.#circuit?.report(target, outcome, now)
  }

  /** Called on the response head from `target` before it is written (sticky cookie). */
  decorate(ctx: RequestContext, target: Target, head: ResponseHead): void {
    this.#sticky?.pin(ctx, target, head)
  }
}
