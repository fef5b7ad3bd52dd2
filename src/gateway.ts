/**
 * Start, reload, drain, stop. Owns the atomic swap: a reload compiles a new
 * snapshot beside the current one; on failure the current one keeps serving
 * and the problems are returned; on success it is swapped in, requests in
 * flight finish on the snapshot they started on, and the old snapshot's
 * plugins (and pools no longer used) close once its last request ends.
 */
import { randomBytes } from 'node:crypto'
import { type FSWatcher, readFileSync, watch } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import type { Logger } from 'pino'
import { type Config, ConfigError, loadConfig } from './config/index.ts'
import type { Env } from './config/load.ts'
import type { PluginDefinition } from './pipeline/plugin.ts'
import { builtinPlugins } from './plugins/index.ts'
import { compile, releaseUnshared } from './runtime/compile.ts'
import type { Runtime } from './runtime/runtime.ts'
import { type PreparedSwap, Serving } from './serving.ts'
import { MemoryStore } from './stores/memory.ts'
import type { Store } from './stores/store.ts'
import { Discovery } from './upstreams/discovery/discovery.ts'
import { ActiveHealthChecker } from './upstreams/health/active.ts'
import { describeTargets, type TargetView } from './upstreams/target-state.ts'
import { workerCount } from './workers/count.ts'
import { healthEntry } from './workers/health-sync.ts'
import { WorkerPool } from './workers/pool.ts'

/**
 * How long start() waits for discovery's first answers (Envoy waits for the
 * first resolution too). A source still silent then leaves its service
 * without targets (503 GH_NO_TARGET) until it answers.
 */
const FIRST_DISCOVERY_WAIT_MS = 5000

export interface GatewayOptions {
  /** The config file; reload reads it again. */
  configFile: string
  env: Env
  logger: Logger
  plugins?: ReadonlyMap<string, PluginDefinition<never>>
}

export type ReloadResult = { ok: true; version: number } | { ok: false; error: ConfigError | Error }

/**
 * Where requests are served: a Serving on this thread (`workers: 1`) or a
 * WorkerPool of threads that each run one. Both switch snapshots in two
 * steps (prepare, then commit or abort) and retire the snapshots they replace.
 */
interface DataPlane {
  /** The snapshot of this thread: the one serving (one thread), or the control snapshot (workers). */
  readonly runtime: Runtime
  prepare(next: Runtime): Promise<PreparedSwap>
  ports(): Record<string, number>
  /** Drains within the grace period; returns the requests cut. */
  stop(graceMs: number): Promise<number>
}

export class Gateway {
  readonly #options: GatewayOptions
  readonly #plugins: ReadonlyMap<string, PluginDefinition<never>>
  readonly #plane: DataPlane
  #watcher: FSWatcher | null = null
  #reloading: Promise<ReloadResult> | null = null
  /** A reload asked for while one runs: it must read the file again, as it may have changed since. */
  #queued: Promise<ReloadResult> | null = null
  #stopped = false
  /** Active health checks, once per process: told of each snapshot that starts serving. */
  readonly #health: ActiveHealthChecker
  /** The config as loaded (frozen); the running snapshot's is this with discovered targets filled in. */
  #base: Config
  readonly #discovery: Discovery
  /** What plugins share across snapshots and threads: made once, here, and handed to every thread. */
  readonly #store: Store
  /** TLS session ticket keys for the life of the process (CompileOptions.ticketKeys). */
  readonly #ticketKeys: Buffer
  /** Reloads and discovery rebuilds run one at a time, in this chain. */
  #lock: Promise<unknown> = Promise.resolve()
  #rebuildQueued = false

  private constructor(
    options: GatewayOptions,
    plugins: ReadonlyMap<string, PluginDefinition<never>>,
    plane: DataPlane,
    base: Config,
    discovery: Discovery,
    store: Store,
    ticketKeys: Buffer,
  ) {
    this.#options = options
    this.#plugins = plugins
    this.#plane = plane
    this.#base = base
    this.#discovery = discovery
    this.#store = store
    this.#ticketKeys = ticketKeys
    const pool = plane instanceof WorkerPool ? plane : null
    this.#health = new ActiveHealthChecker({
      logger: options.logger,
      // Worker threads apply the same verdicts, so every thread agrees on which targets are up.
      onVerdict:
        pool && ((service, target, unejected) => pool.health([healthEntry(service, target, unejected)])),
    })
  }

  /** Loads, compiles and starts listening; throws ConfigError with every problem. */
  static async start(options: GatewayOptions): Promise<Gateway> {
    const plugins = options.plugins ?? builtinPlugins()
    const logger = options.logger
    const config = await loadConfig(options.configFile, { plugins, env: options.env })
    let gateway: Gateway | null = null
    /** A discovery answer came after the first compile, before the gateway existed to rebuild. */
    let missed = false
    const discovery = new Discovery({
      logger,
      env: options.env,
      onChange: () => {
        if (gateway) gateway.#discoveryChanged()
        else missed = true
      },
    })
    let runtime: Runtime
    let plane: DataPlane
    const store = MemoryStore.create()
    const ticketKeys = randomBytes(48)
    try {
      discovery.sync(config)
      await discovery.ready(FIRST_DISCOVERY_WAIT_MS)
      runtime = compile(discovery.apply(config), {
        plugins,
        logger,
        previous: null,
        version: 1,
        store,
        ticketKeys,
      })
      missed = false
      const threads = await workerCount(config.workers, {
        logger,
        // Worker threads load the built-in plugins; a registry passed in here exists on this thread only.
        customPlugins: options.plugins !== undefined,
      })
      try {
        plane =
          threads > 1
            ? await WorkerPool.start({ count: threads, runtime, logger, store, ticketKeys })
            : await Serving.start(runtime, { reusePort: false })
      } catch (error) {
        void releaseUnshared(runtime, null)
        throw error
      }
    } catch (error) {
      discovery.stop()
      throw error
    }
    const started = new Gateway(options, plugins, plane, config, discovery, store, ticketKeys)
    gateway = started
    started.#health.update(runtime.services)
    if (missed) started.#discoveryChanged()
    return started
  }

  get runtime(): Runtime {
    return this.#plane.runtime
  }

  get config(): Config {
    return this.runtime.config
  }

  /** The worker threads, or null when serving on this thread. */
  get workers(): WorkerPool | null {
    return this.#plane instanceof WorkerPool ? this.#plane : null
  }

  /** Bound ports by listener name (port 0 resolved), e.g. for tests and the demo. */
  ports(): Record<string, number> {
    return this.#plane.ports()
  }

  /**
   * Every target of every service with its state now (health, ejection,
   * draining, load, latency), as one plain structure for metrics and the admin API.
   * With worker threads, health is the main thread's verdict and load and
   * latency are not gathered from the threads (they stay 0).
   */
  upstreamStates(): Record<string, TargetView[]> {
    const now = performance.now()
    const out: Record<string, TargetView[]> = {}
    for (const [name, service] of this.runtime.services) {
      // An ejection that ran out while the service was idle has not been noticed by a request yet.
      service.selection.refresh(now)
      out[name] = describeTargets(service.targets, now, (target) => service.describeCircuit(target, now))
    }
    return out
  }

  /**
   * Re-reads the config file. Reloads never overlap: a call made while one
   * runs waits for it and then reads the file once more (calls made meanwhile
   * share that second reload), so the last change is never missed.
   */
  reload(): Promise<ReloadResult> {
    if (this.#queued) return this.#queued
    if (this.#reloading) {
      this.#queued = this.#reloading.then(() => {
        this.#queued = null
        return this.reload()
      })
      return this.#queued
    }
    this.#reloading = this.#exclusive(() => this.#reload()).finally(() => {
      this.#reloading = null
    })
    return this.#reloading
  }

  async #reload(): Promise<ReloadResult> {
    const logger = this.#options.logger
    const old = this.runtime
    if (this.#stopped) return { ok: false, error: new Error('the gateway is stopping') }
    let next: Runtime
    let base: Config
    try {
      const config = await loadConfig(this.#options.configFile, {
        plugins: this.#plugins,
        env: this.#options.env,
      })
      // Sources whose settings did not change keep their last targets; new ones answer after the swap.
      next = compile(this.#discovery.apply(config), {
        plugins: this.#plugins,
        logger,
        previous: old,
        version: old.version + 1,
        store: this.#store,
        ticketKeys: this.#ticketKeys,
      })
      base = config
    } catch (error) {
      // The message lists every problem as file:line:column; `problems` carries them for log processors.
      logger.error(
        error instanceof ConfigError ? { problems: error.problems } : { err: error },
        `reload refused, still serving version ${old.version}:\n${(error as Error).message}`,
      )
      return { ok: false, error: error as Error }
    }
    const swapped = await this.#swapIn(old, next, 'reload')
    if (!swapped.ok) return swapped
    this.#base = base
    this.#discovery.sync(base)
    logger.info({ version: next.version }, 'configuration reloaded')
    if (base.workers !== old.config.workers) await this.#resize(old.config.workers, base.workers)
    return swapped
  }

  /**
   * A reload changed `workers`: worker threads are added or retired. Serving
   * on this thread is kept until the next start: its connections cannot move
   * to other threads.
   */
  async #resize(was: Config['workers'], configured: Config['workers']): Promise<void> {
    const logger = this.#options.logger
    const pool = this.workers
    const wanted = await workerCount(configured, {
      logger,
      customPlugins: this.#options.plugins !== undefined,
    })
    if (pool !== null) {
      // A thread that cannot start is logged; the reload itself has succeeded on the threads there are.
      await pool.resize(wanted, this.runtime.config.global.gracePeriodMs).catch(() => {})
      return
    }
    if (wanted > 1)
      logger.warn(
        { workers: was, configured },
        'workers changed: serving on this thread until the next start, which starts the worker threads',
      )
  }

  /**
   * Makes `next` the snapshot new requests get, on every thread or on none:
   * the data plane opens the listeners it needs first; the old snapshot
   * finishes its requests and is retired.
   */
  async #swapIn(old: Runtime, next: Runtime, what: string): Promise<ReloadResult> {
    const logger = this.#options.logger
    if (this.#stopped) {
      void releaseUnshared(next, old)
      return { ok: false, error: new Error('the gateway is stopping') }
    }
    let swap: PreparedSwap
    try {
      swap = await this.#plane.prepare(next)
    } catch (error) {
      logger.error(
        { err: error },
        `${what} refused, still serving version ${old.version}: ${listenFailure(error)}`,
      )
      return { ok: false, error: error as Error }
    }
    swap.commit()
    this.#health.update(next.services)
    return { ok: true, version: next.version }
  }

  /** Runs `task` after every reload or rebuild before it has finished. */
  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(task)
    this.#lock = run.catch(() => {})
    return run
  }

  /**
   * A discovery source found a new list. The running snapshot is not touched:
   * a new one is compiled from the loaded config with the discovered lists
   * and swapped in as a reload is, so targets that remain keep their pools,
   * health and breaker state (compile carries them over by service and
   * origin) and requests in flight finish where they started. Changes that
   * arrive while a rebuild waits its turn share it.
   */
  #discoveryChanged(): void {
    if (this.#rebuildQueued || this.#stopped) return
    this.#rebuildQueued = true
    void this.#exclusive(async () => {
      this.#rebuildQueued = false
      await this.#rebuild()
    })
  }

  async #rebuild(): Promise<void> {
    if (this.#stopped) return
    const old = this.runtime
    let next: Runtime
    try {
      next = compile(this.#discovery.apply(this.#base), {
        plugins: this.#plugins,
        logger: this.#options.logger,
        previous: old,
        version: old.version + 1,
        store: this.#store,
        ticketKeys: this.#ticketKeys,
      })
    } catch (error) {
      this.#options.logger.error(
        { err: error },
        `discovered targets refused, still serving version ${old.version}`,
      )
      return
    }
    const swapped = await this.#swapIn(old, next, 'discovered targets')
    if (swapped.ok) this.#options.logger.info({ version: next.version }, 'discovered targets applied')
  }

  /**
   * Reloads when the file's text changes (debounced). The folder is watched,
   * not the file: an editor that writes a new file and renames it over the
   * old one, or a Kubernetes ConfigMap volume (which swaps a `..data` symlink,
   * so events name another entry), replaces what a watch on the file follows.
   * So any event in the folder reads the file, and only a different text reloads.
   */
  watch(debounceMs = 200): void {
    if (this.#watcher) return
    const file = resolve(this.#options.configFile)
    const logger = this.#options.logger
    let seen = readTextOrNull(file)
    let timer: NodeJS.Timeout | undefined
    const check = async () => {
      const text = await readFile(file, 'utf8').catch(() => null)
      // Missing for a moment (between unlink and rename) or unchanged: the next event brings the change.
      if (text === null || text === seen || this.#stopped) return
      seen = text
      logger.info({ file }, 'config file changed: reloading')
      await this.reload()
    }
    try {
      this.#watcher = watch(dirname(file), () => {
        clearTimeout(timer)
        timer = setTimeout(() => void check(), debounceMs)
        timer.unref()
      })
    } catch (error) {
      // E.g. the inotify watch limit: serving matters more than watching.
      logger.error({ err: error }, 'cannot watch the config file; reload with SIGHUP')
      return
    }
    this.#watcher.on('error', (error) => {
      // E.g. the folder was removed: keep serving; SIGHUP still reloads.
      logger.error({ err: error }, 'stopped watching the config file; reload with SIGHUP')
      this.#watcher?.close()
    })
    this.#watcher.unref()
  }

  /**
   * Graceful stop: stop accepting, let in-flight requests finish within the
   * grace period (closing idle keep-alive connections as they free up), then
   * cut what is left and close pools, plugins and the access log; on every thread.
   */
  async stop(graceMs = this.runtime.config.global.gracePeriodMs): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    this.#watcher?.close()
    this.#health.stop()
    this.#discovery.stop()
    // A reload or rebuild under way finishes first (one queued after it sees `stopped` and does nothing).
    await this.#reloading?.catch(() => {})
    await this.#lock
    const cut = await this.#plane.stop(graceMs)
    if (cut > 0)
      this.#options.logger.warn(
        { inflight: cut, gracePeriodMs: graceMs },
        'grace period over: cutting the requests still running',
      )
  }
}

function readTextOrNull(file: string): string | null {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return null
  }
}

/** A clear sentence for the errors that listening fails with. */
export function listenFailure(error: unknown): string {
  const e = error as NodeJS.ErrnoException & { address?: string; port?: number }
  const where = e.address === undefined ? '' : `${e.address}:${e.port}`
  if (e.code === 'EADDRINUSE') return `${where} is already in use (another process is listening there)`
  if (e.code === 'EACCES') return `no permission to listen on ${where} (ports below 1024 need privileges)`
  if (e.code === 'EADDRNOTAVAIL') return `${where}: the host address is not one of this machine's`
  return (error as Error).message
}
