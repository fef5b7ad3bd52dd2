/**
 * Start, reload, drain, stop. Owns the atomic swap: a reload compiles a new
 * snapshot beside the current one; on failure the current one keeps serving
 * and the problems are returned; on success it is swapped in, requests in
 * flight finish on the snapshot they started on, and the old snapshot's
 * plugins (and pools no longer used) close once its last request ends.
 */
import { type FSWatcher, watch } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'
import type { Logger } from 'pino'
import { type Config, ConfigError, loadConfig } from './config/index.ts'
import type { Env } from './config/load.ts'
import { applyLimits, listenerShape, type RunningListener, startListener } from './listeners/servers.ts'
import type { PluginDefinition } from './pipeline/plugin.ts'
import { builtinPlugins } from './plugins/index.ts'
import { compile, releaseUnshared } from './runtime/compile.ts'
import type { Runtime } from './runtime/runtime.ts'

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
  #current: Runtime
  #watcher: FSWatcher | null = null
  #reloading: Promise<ReloadResult> | null = null
  #stopped = false

  private constructor(
    options: GatewayOptions,
    plugins: ReadonlyMap<string, PluginDefinition<never>>,
    runtime: Runtime,
  ) {
    this.#options = options
    this.#plugins = plugins
    this.#current = runtime
  }

  /** Loads, compiles and starts listening; throws ConfigError with every problem. */
  static async start(options: GatewayOptions): Promise<Gateway> {
    const plugins = options.plugins ?? builtinPlugins()
    const config = await loadConfig(options.configFile, { plugins, env: options.env })
    const runtime = compile(config, { plugins, logger: options.logger, previous: null, version: 1 })
    const gateway = new Gateway(options, plugins, runtime)
    try {
      await gateway.#syncListeners(runtime)
    } catch (error) {
      await gateway.stop(0)
      throw error
    }
    return gateway
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

  /** Re-reads the config file. Concurrent calls share one reload. */
  reload(): Promise<ReloadResult> {
    this.#reloading ??= this.#reload().finally(() => {
      this.#reloading = null
    })
    return this.#reloading
  }

  async #reload(): Promise<ReloadResult> {
    const logger = this.#options.logger
    const old = this.#current
    let next: Runtime
    try {
      const config = await loadConfig(this.#options.configFile, {
        plugins: this.#plugins,
        env: this.#options.env,
      })
      next = compile(config, { plugins: this.#plugins, logger, previous: old, version: old.version + 1 })
    } catch (error) {
      logger.error(
        { err: error instanceof ConfigError ? undefined : error },
        `reload refused, still serving version ${old.version}:\n${(error as Error).message}`,
      )
      return { ok: false, error: error as Error }
    }
    try {
      await this.#syncListeners(next)
    } catch (error) {
      logger.error(
        { err: error },
        `reload refused: a listener could not start; still serving version ${old.version}`,
      )
      void releaseUnshared(next, old)
      return { ok: false, error: error as Error }
    }
    this.#current = next
    this.#retire(old, next)
    logger.info({ version: next.version }, 'configuration reloaded')
    return { ok: true, version: next.version }
  }

  #retire(old: Runtime, next: Runtime | null): void {
    this.#draining.add(old)
    const done = releaseUnshared(old, next).finally(() => {
      this.#draining.delete(old)
      this.#retiring.delete(done)
    })
    this.#retiring.add(done)
  }

  /** Opens new listeners (before the swap, so a port in use fails the reload), updates kept ones, closes removed ones. */
  async #syncListeners(next: Runtime): Promise<void> {
    const started: RunningListener[] = []
    const replaced: RunningListener[] = []
    try {
      for (const [key, listener] of next.listeners) {
        const running = this.#listeners.get(key)
        if (running && running.shape === listenerShape(listener.config)) continue
        if (running) {
          // A listener whose shape changed (TLS on/off, HTTP/2, head size) is rebound.
          running.close()
          replaced.push(running)
        }
        started.push(await startListener(listener, () => this.#current))
      }
    } catch (error) {
      for (const running of started) running.close()
      throw error
    }
    for (const running of started) this.#listeners.set(running.key, running)
    for (const running of replaced) running.closeIdle()
    for (const [key, running] of this.#listeners) {
      const listener = next.listeners.get(key)
      if (listener) applyLimits(running.server, listener)
      else {
        running.close()
        running.closeIdle()
        this.#listeners.delete(key)
      }
    }
  }

  /** Reload when the file changes (debounced), watching the folder so editors that replace the file are seen. */
  watch(debounceMs = 200): void {
    if (this.#watcher) return
    const file = resolve(this.#options.configFile)
    let timer: NodeJS.Timeout | undefined
    this.#watcher = watch(dirname(file), (_event, name) => {
      if (name !== basename(file)) return
      clearTimeout(timer)
      timer = setTimeout(() => void this.reload(), debounceMs)
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
    for (const running of this.#listeners.values()) running.close()
    const deadline = Date.now() + graceMs
    const busy = () => this.#current.inflight > 0 || [...this.#draining].some((rt) => rt.inflight > 0)
    while (busy() && Date.now() < deadline) {
      for (const running of this.#listeners.values()) running.closeIdle()
      await new Promise((r) => setTimeout(r, 25))
    }
    for (const running of this.#listeners.values()) running.closeAll()
    this.#listeners.clear()
    this.#retire(this.#current, null)
    await Promise.allSettled([...this.#retiring])
  }
}
