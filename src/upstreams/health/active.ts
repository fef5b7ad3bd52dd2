/**
 * Active health checks: one schedule per target, owned by the Gateway and so
 * run once per process, whatever the number of requests or snapshots.
 *
 * The gateway hands over the services of each snapshot it starts serving
 * (`update`). A check is keyed by the target's TargetState, which compile.ts
 * carries over to the next snapshot for a target that remains: such a target
 * keeps its schedule, streak and verdict; a removed target's check stops; a
 * new target's check starts within the first tenth of its interval.
 *
 * A verdict flips only after `unhealthyThreshold` failures, or
 * `healthyThreshold` passes, in a row (HAProxy's fall/rise): one lost probe
 * never takes a target out. Checks of one target never overlap: the next one
 * is scheduled when the last ends, 90-100% of `interval` later (the jitter
 * keeps checks of many targets from moving in step, and never stretches the
 * time to notice a dead target beyond `interval` x threshold plus timeouts).
 */
import type { Logger } from 'pino'
import type { ActiveHealthConfig } from '../../config/types.ts'
import type { UpstreamService } from '../service.ts'
import type { Target } from '../target.ts'
import type { TargetState } from '../target-state.ts'
import { createProbe, type Probe, type ProbeResult } from './probe.ts'

/** Share of the interval taken off at random. */
export const CHECK_JITTER = 0.1

export interface ActiveHealthOptions {
  logger: Logger
  /** The clock of TargetState times (default performance.now). */
  now?: () => number
  /** Default Math.random; tests may pin the jitter. */
  random?: () => number
  /**
   * Told of each changed verdict (up, down, or a passive ejection ended by a
   * passing check), after this thread's selection is updated: worker threads
   * get the same verdict from here.
   */
  onVerdict?: ((service: UpstreamService, target: Target, unejected: boolean) => void) | null
}

/** One target's checks: what it checks with, where the verdict goes, and its schedule. */
interface Check {
  service: UpstreamService
  target: Target
  config: ActiveHealthConfig
  /** The check config and TLS settings, to tell a changed check from an unchanged one on reload. */
  shape: string
  probe: Probe
  timer: NodeJS.Timeout | null
  running: AbortController | null
  stopped: boolean
}

export class ActiveHealthChecker {
  readonly #checks = new Map<TargetState, Check>()
  readonly #logger: Logger
  readonly #now: () => number
  readonly #random: () => number
  readonly #onVerdict: NonNullable<ActiveHealthOptions['onVerdict']>
  #stopped = false

  constructor(options: ActiveHealthOptions) {
    this.#logger = options.logger
    this.#now = options.now ?? (() => performance.now())
    this.#random = options.random ?? Math.random
    this.#onVerdict = options.onVerdict ?? (() => {})
  }

  /** Targets being checked. */
  get size(): number {
    return this.#checks.size
  }

  /** Follows the services of the snapshot now serving: starts, keeps, retargets and stops checks. */
  update(services: ReadonlyMap<string, UpstreamService>): void {
    if (this.#stopped) return
    const serviceOf = new Map<TargetState, UpstreamService>()
    for (const service of services.values()) {
      const config = service.config.healthCheck.active
      for (const target of service.targets) {
        serviceOf.set(target.state, service)
        if (config !== null) this.#keep(service, target, config)
      }
    }
    for (const [state, check] of this.#checks) {
      const service = serviceOf.get(state)
      if (service !== undefined && service.config.healthCheck.active !== null) continue
      this.#cancel(check)
      this.#checks.delete(state)
      // Checks turned off for a target that remains: nothing would ever bring it back, so it is up again.
      if (service !== undefined && !state.healthy) {
        state.healthy = true
        state.streak = 0
        state.lastCheckFailure = null
        service.selection.update(this.#now())
        this.#onVerdict(service, check.target, false)
      }
    }
  }

  /** Stops every check and aborts those running. */
  stop(): void {
    this.#stopped = true
    for (const check of this.#checks.values()) this.#cancel(check)
    this.#checks.clear()
  }

  #keep(service: UpstreamService, target: Target, config: ActiveHealthConfig): void {
    const tls = service.config.tls
    const shape = JSON.stringify([config, tls.ca, tls.verify, tls.serverName])
    const check = this.#checks.get(target.state)
    if (check === undefined) {
      const created: Check = {
        service,
        target,
        config,
        shape,
        probe: createProbe(config, tls),
        timer: null,
        running: null,
        stopped: false,
      }
      this.#checks.set(target.state, created)
      this.#schedule(created, this.#random() * CHECK_JITTER * config.intervalMs)
      return
    }
    // Same target, newer snapshot: verdicts go to the service now serving.
    check.service = service
    check.target = target
    if (check.shape === shape) return
    const intervalChanged = check.config.intervalMs !== config.intervalMs
    check.config = config
    check.shape = shape
    check.probe = createProbe(config, tls)
    // A waiting check would keep the old interval once more; a running one schedules with the new.
    if (intervalChanged && check.timer !== null) {
      clearTimeout(check.timer)
      this.#schedule(check, this.#random() * CHECK_JITTER * config.intervalMs)
    }
  }

  #schedule(check: Check, delayMs: number): void {
    check.timer = setTimeout(() => void this.#run(check), delayMs)
    // Checks alone do not keep the process alive; the listeners do.
    check.timer.unref()
  }

  async #run(check: Check): Promise<void> {
    check.timer = null
    const running = new AbortController()
    check.running = running
    const result = await check.probe(check.target, running.signal)
    check.running = null
    if (check.stopped) return
    this.#record(check, result)
    this.#schedule(check, check.config.intervalMs * (1 - CHECK_JITTER * this.#random()))
  }

  #record(check: Check, result: ProbeResult): void {
    const state = check.target.state
    state.lastCheckFailure = result.ok ? null : result.reason
    if (result.ok && state.healthy) this.#unejectOnPass(check)
    if (result.ok === state.healthy) {
      state.streak = 0
      return
    }
    state.streak++
    const threshold = state.healthy ? check.config.unhealthyThreshold : check.config.healthyThreshold
    if (state.streak < threshold) return
    state.healthy = result.ok
    state.streak = 0
    check.service.selection.update(this.#now())
    this.#onVerdict(check.service, check.target, false)
    const fields = { service: check.service.config.name, target: check.target.url, checks: threshold }
    if (result.ok) this.#logger.info(fields, 'target up: passed its active health checks')
    else
      this.#logger.warn({ ...fields, reason: result.reason }, 'target down: failed its active health checks')
  }

  /**
   * A passing check ends a passive ejection early, as Envoy does by default
   * (outlier_detection.successful_active_health_check_uneject_host): a target
   * that was reset or restarted need not sit out its whole ejection. Its
   * ejection count stays, so a failure right after ejects it for longer.
   */
  #unejectOnPass(check: Check): void {
    const state = check.target.state
    const now = this.#now()
    if (state.ejectedUntil <= now) return
    state.ejectedUntil = 0
    check.service.selection.update(now)
    this.#onVerdict(check.service, check.target, true)
    this.#logger.info(
      { service: check.service.config.name, target: check.target.url },
      'target back: a passing active health check ended its ejection',
    )
  }

  #cancel(check: Check): void {
    check.stopped = true
    if (check.timer !== null) clearTimeout(check.timer)
    check.timer = null
    check.running?.abort()
  }
}
