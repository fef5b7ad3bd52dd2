/**
 * Start, reload, drain, stop. Owns the atomic swap: a reload compiles a new
 * snapshot beside the current one; on failure the current one keeps serving
 * and the problems are returned; on success it is swapped in, requests in
 * flight finish on the snapshot they started on, and the old snapshot's
 * plugins (and pools no longer used) close once its last request ends.
 */
import { type FSWatcher, readFileSync, watch } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { dirname, resolve } from 'node:path'
import type { Logger } from 'pino'
import { type Config, ConfigError, loadConfig } from './config/index.ts'
import type { Env } from './config/load.ts'
import { applyLimits, listenerShape, type RunningListener, startListener } from './listeners/servers.ts'
import type { PluginDefinition } from './pipeline/plugin.ts'
import { builtinPlugins } from './plugins/index.ts'
import { compile, releaseUnshared } from './runtime/compile.ts'
import type { Runtime } from './runtime/runtime.ts'
import { Discovery } from './upstreams/discovery/discovery.ts'
import { ActiveHealthChecker } from './upstreams/health/active.ts'
import { describeTargets, type TargetView } from './upstreams/target-state.ts'

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

export class Gateway {
  readonly #options: GatewayOptions
  readonly #plugins: ReadonlyMap<string, PluginDefinition<never>>
  readonly #listeners = new Map<string, RunningListener>()
  readonly #retiring = new Set<Promise<void>>()
  readonly #draining = new Set<Runtime>()
  /** Listeners a reload closed or replaced whose connections have not all ended yet. */
  readonly #closing = new Set<RunningListener>()
  #current: Runtime
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
  /** Reloads and discovery rebuilds run one at a time, in this chain. */
  #lock: Promise<unknown> = Promise.resolve()
  #rebuildQueued = false

  private constructor(
    options: GatewayOptions,
    plugins: ReadonlyMap<string, PluginDefinition<never>>,
    runtime: Runtime,
    base: Config,
    discovery: Discovery,
  ) {
    this.#options = options
    this.#plugins = plugins
    this.#current = runtime
    this.#base = base
    this.#discovery = discovery
    this.#health = new ActiveHealthChecker({ logger: options.logger })
  }

  /** Loads, compiles and starts listening; throws ConfigError with every problem. */
  static async start(options: GatewayOptions): Promise<Gateway> {
    const plugins = options.plugins ?? builtinPlugins()
    const config = await loadConfig(options.configFile, { plugins, env: options.env })
    let gateway: Gateway | null = null
    const discovery = new Discovery({
      logger: options.logger,
      env: options.env,
      // Answers before the gateway exists are read by the first compile below.
      onChange: () => {
        if (gateway) gateway.#discoveryChanged()
      },
    })
    let runtime: Runtime
    try {
      discovery.sync(config)
      await discovery.ready(FIRST_DISCOVERY_WAIT_MS)
      runtime = compile(discovery.apply(config), {
        plugins,
        logger: options.logger,
        previous: null,
        version: 1,
      })
    } catch (error) {
      discovery.stop()
      throw error
    }
    activateServices(runtime)
    const started = new Gateway(options, plugins, runtime, config, discovery)
    gateway = started
    try {
      // In the chain: a discovery rebuild arriving meanwhile waits until the listeners are up.
      await started.#exclusive(async () => {
        await started.#syncListeners(runtime)
        started.#health.update(runtime.services)
      })
    } catch (error) {
      await started.stop(0)
      throw error
    }
    return started
  }

  get runtime(): Runtime {
    return this.#current
  }

  get config(): Config {
    return this.#current.config
  }

  /** Bound ports by listener name (port 0 resolved), e.g. for tests and the demo. */
  ports(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [key, running] of this.#listeners) {
      const listener = this.#current.listeners.get(key)
      if (listener) out[listener.config.name] = running.port()
    }
    return out
  }

  /**
   * Every target of every service with its state now (health, ejection,
   * draining, load, latency), as one plain structure for metrics and the admin API.
   */
  upstreamStates(): Record<string, TargetView[]> {
    const now = performance.now()
    const out: Record<string, TargetView[]> = {}
    for (const [name, service] of this.#current.services) {
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
    const old = this.#current
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
    return swapped
  }

  /**
   * Opens the listeners `next` needs, then makes it the snapshot new
   * requests get; the old one finishes its requests and is retired.
   */
  async #swapIn(old: Runtime, next: Runtime, what: string): Promise<ReloadResult> {
    const logger = this.#options.logger
    if (this.#stopped) {
      void releaseUnshared(next, old)
      return { ok: false, error: new Error('the gateway is stopping') }
    }
    try {
      await this.#syncListeners(next)
    } catch (error) {
      logger.error(
        { err: error },
        `${what} refused, still serving version ${old.version}: ${listenFailure(error)}`,
      )
      void releaseUnshared(next, old)
      return { ok: false, error: error as Error }
    }
    this.#current = next
    activateServices(next)
    this.#health.update(next.services)
    this.#retire(old, next)
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
    const old = this.#current
    let next: Runtime
    try {
      next = compile(this.#discovery.apply(this.#base), {
        plugins: this.#plugins,
        logger: this.#options.logger,
        previous: old,
        version: old.version + 1,
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

  #retire(old: Runtime, next: Runtime | null): void {
    this.#draining.add(old)
    const done = releaseUnshared(old, next).finally(() => {
      this.#draining.delete(old)
      this.#retiring.delete(done)
    })
    this.#retiring.add(done)
  }

  /**
   * Opens new listeners before the swap, so a port in use fails the reload
   * with nothing changed; then updates kept ones and closes removed ones.
   */
  async #syncListeners(next: Runtime): Promise<void> {
    const started: RunningListener[] = []
    const replaced: { running: RunningListener; address: AddressInfo }[] = []
    try {
      for (const [key, listener] of next.listeners) {
        const running = this.#listeners.get(key)
        if (running && running.shape === listenerShape(listener.config)) continue
        if (running) {
          // A listener whose shape changed (TLS on/off, HTTP/2, head size) is rebound on its address.
          replaced.push({ running, address: running.server.address() as AddressInfo })
          running.close()
        }
        started.push(await startListener(listener, () => this.#current))
      }
    } catch (error) {
      for (const running of started) running.close()
      // Give the replaced servers their address back, so the failed reload leaves everything as it was.
      for (const { running, address } of replaced) await relisten(running, address)
      throw error
    }
    for (const running of started) this.#listeners.set(running.key, running)
    for (const { running } of replaced) this.#retireListener(running)
    for (const [key, running] of this.#listeners) {
      const listener = next.listeners.get(key)
      if (listener) applyLimits(running.server, listener)
      else {
        running.close()
        this.#listeners.delete(key)
        this.#retireListener(running)
      }
    }
  }

  /**
   * A closed listener's busy connections finish their requests; each is
   * closed once idle, and stop() cuts whatever is left.
   */
  #retireListener(running: RunningListener): void {
    this.#closing.add(running)
    running.closeIdle()
    running.server.once('close', () => this.#closing.delete(running))
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
   * cut what is left and close pools, plugins and the access log.
   */
  async stop(graceMs = this.#current.config.global.gracePeriodMs): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    this.#watcher?.close()
    this.#health.stop()
    this.#discovery.stop()
    // A reload or rebuild under way finishes first (one queued after it sees `stopped` and does nothing).
    await this.#reloading?.catch(() => {})
    await this.#lock
    for (const running of this.#listeners.values()) running.close()
    const all = [...this.#listeners.values(), ...this.#closing]
    const deadline = Date.now() + graceMs
    const busy = () => this.#current.inflight > 0 || [...this.#draining].some((rt) => rt.inflight > 0)
    while (busy() && Date.now() < deadline) {
      // Keep-alive connections are closed as soon as their last response is out.
      for (const running of all) running.closeIdle()
      await new Promise((r) => setTimeout(r, 25))
    }
    if (busy()) {
      const inflight = [this.#current, ...this.#draining].reduce((sum, rt) => sum + rt.inflight, 0)
      this.#options.logger.warn(
        { inflight, gracePeriodMs: graceMs },
        'grace period over: cutting the requests still running',
      )
    }
    for (const running of all) running.closeAll()
    this.#listeners.clear()
    this.#closing.clear()
    this.#retire(this.#current, null)
    await Promise.allSettled([...this.#retiring])
  }
}

/**
 * A snapshot goes live: its services apply their configured draining and
 * compute which targets may be picked, on the target state they share with
 * the previous snapshot (so only now, never at compile).
 */
function activateServices(runtime: Runtime): void {
  const now = performance.now()
  for (const service of runtime.services.values()) service.selection.activate(now)
}

function readTextOrNull(file: string): string | null {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return null
  }
}

/** Binds a closed server again on the address it had (after a failed replacement). */
function relisten(running: RunningListener, address: AddressInfo): Promise<void> {
  return new Promise((resolve) => {
    running.server.once('error', () => resolve())
    running.server.listen({ port: address.port, host: address.address }, () => resolve())
  })
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
