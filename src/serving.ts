/**
 * The data plane of one thread: the listeners, the snapshot requests get,
 * and the snapshots still finishing their requests. A new snapshot goes live
 * in two steps, so that several threads can switch together or not at all
 * (workers/pool.ts): `prepare` opens the listeners it needs and may fail,
 * leaving everything as it was; the `commit` it returns cannot fail and makes
 * it current, `abort` undoes the prepare. The Gateway (control plane) owns
 * the config, discovery and health checks, and drives one Serving on its own
 * thread or one per worker thread.
 */
import type { AddressInfo } from 'node:net'
import {
  applyLimits,
  type BindOptions,
  listenerShape,
  type RunningListener,
  startListener,
} from './listeners/servers.ts'
import { releaseUnshared } from './runtime/compile.ts'
import type { Runtime } from './runtime/runtime.ts'

export interface PreparedSwap {
  /** Makes the prepared snapshot the one new requests get; the old one finishes its requests and retires. */
  commit(): void
  /** Closes what prepare opened and gives replaced listeners their address back. */
  abort(): Promise<void>
}

export interface ServingOptions {
  /** Bind with SO_REUSEPORT (several threads serve the same ports). */
  readonly reusePort: boolean
}

export class Serving {
  readonly #listeners = new Map<string, RunningListener>()
  /** Listeners a reload closed or replaced whose connections have not all ended yet. */
  readonly #closing = new Set<RunningListener>()
  readonly #draining = new Set<Runtime>()
  readonly #retiring = new Set<Promise<void>>()
  readonly #reusePort: boolean
  /** Ports chosen elsewhere for listeners configured on port 0, by listener key (workers/pool.ts). */
  readonly #assignedPorts = new Map<string, number>()
  #current: Runtime
  /** A prepare not yet committed or aborted: only one at a time. */
  #pending = false
  #stopped = false

  private constructor(runtime: Runtime, options: ServingOptions) {
    this.#current = runtime
    this.#reusePort = options.reusePort
  }

  /** Opens the listeners of `runtime` and serves it; throws (with everything closed) when a port cannot be bound. */
  static async start(
    runtime: Runtime,
    options: ServingOptions,
    assignedPorts: Readonly<Record<string, number>> = {},
  ): Promise<Serving> {
    const serving = new Serving(runtime, options)
    serving.assignPorts(assignedPorts)
    const prepared = await serving.#open(runtime)
    serving.#adopt(prepared, runtime)
    activateServices(runtime)
    return serving
  }

  get runtime(): Runtime {
    return this.#current
  }

  /** Requests in flight on the current snapshot and on those still draining. */
  get inflight(): number {
    let total = this.#current.inflight
    for (const runtime of this.#draining) total += runtime.inflight
    return total
  }

  /** Ports to bind for listeners configured on port 0 (by listener key), so every thread binds the same. */
  assignPorts(ports: Readonly<Record<string, number>>): void {
    for (const [key, port] of Object.entries(ports)) this.#assignedPorts.set(key, port)
  }

  /** Bound ports by listener name (port 0 resolved). */
  ports(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [key, running] of this.#listeners) {
      const listener = this.#current.listeners.get(key)
      if (listener) out[listener.config.name] = running.port()
    }
    return out
  }

  /** Bound ports by listener key, for the threads that must bind the same. */
  portsByKey(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [key, running] of this.#listeners) out[key] = running.port()
    return out
  }

  /**
   * Opens the listeners `next` needs. A port that cannot be bound rejects
   * with nothing changed; otherwise the caller commits or aborts.
   */
  async prepare(next: Runtime): Promise<PreparedSwap & { ports: Record<string, number> }> {
    if (this.#stopped) throw new Error('the gateway is stopping')
    if (this.#pending) throw new Error('another snapshot is being prepared')
    this.#pending = true
    let opened: Opened
    try {
      opened = await this.#open(next)
    } catch (error) {
      this.#pending = false
      throw error
    }
    const ports: Record<string, number> = {}
    for (const running of opened.started) ports[running.key] = running.port()
    let settled = false
    return {
      ports,
      commit: () => {
        if (settled) return
        settled = true
        this.#pending = false
        const old = this.#current
        this.#adopt(opened, next)
        this.#current = next
        activateServices(next)
        this.#retire(old, next)
      },
      abort: async () => {
        if (settled) return
        settled = true
        this.#pending = false
        await this.#undo(opened)
        void releaseUnshared(next, this.#current)
      },
    }
  }

  /**
   * Opens new listeners (and rebinds those whose shape changed) before the
   * swap, so a port in use fails with nothing changed.
   */
  async #open(next: Runtime): Promise<Opened> {
    const opened: Opened = { started: [], replaced: [] }
    try {
      for (const [key, listener] of next.listeners) {
        const running = this.#listeners.get(key)
        if (running && running.shape === listenerShape(listener.config)) continue
        if (running) {
          // A listener whose shape changed (TLS on/off, HTTP/2, head size) is rebound on its address.
          opened.replaced.push({ running, address: running.server.address() as AddressInfo })
          running.close()
        }
        const bind: BindOptions = { reusePort: this.#reusePort, port: this.#assignedPorts.get(key) }
        opened.started.push(await startListener(listener, () => this.#current, bind))
      }
    } catch (error) {
      await this.#undo(opened)
      throw error
    }
    return opened
  }

  /** Closes what #open started and binds replaced servers again on their address. */
  async #undo(opened: Opened): Promise<void> {
    for (const running of opened.started) running.close()
    for (const { running, address } of opened.replaced) await relisten(running, address, this.#reusePort)
  }

  /** After the swap: new listeners join, replaced and removed ones finish their connections. */
  #adopt(opened: Opened, next: Runtime): void {
    for (const running of opened.started) this.#listeners.set(running.key, running)
    for (const { running } of opened.replaced) this.#retireListener(running)
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

  #retire(old: Runtime, next: Runtime | null): void {
    this.#draining.add(old)
    const done = releaseUnshared(old, next).finally(() => {
      this.#draining.delete(old)
      this.#retiring.delete(done)
    })
    this.#retiring.add(done)
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
   * Graceful stop: stop accepting, let in-flight requests finish within the
   * grace period (closing idle keep-alive connections as they free up), then
   * cut what is left and close pools, plugins and the access log.
   * Returns the requests that were cut.
   */
  async stop(graceMs: number): Promise<number> {
    if (this.#stopped) return 0
    this.#stopped = true
    for (const running of this.#listeners.values()) running.close()
    const all = [...this.#listeners.values(), ...this.#closing]
    const deadline = Date.now() + graceMs
    while (this.inflight > 0 && Date.now() < deadline) {
      // Keep-alive connections are closed as soon as their last response is out.
      for (const running of all) running.closeIdle()
      await new Promise((r) => setTimeout(r, 25))
    }
    const cut = this.inflight
    for (const running of all) running.closeAll()
    this.#listeners.clear()
    this.#closing.clear()
    this.#retire(this.#current, null)
    await Promise.allSettled([...this.#retiring])
    return cut
  }
}

interface Opened {
  started: RunningListener[]
  replaced: { running: RunningListener; address: AddressInfo }[]
}

/**
 * A snapshot goes live: its services apply their configured draining and
 * compute which targets may be picked, on the target state they share with
 * the previous snapshot (so only now, never at compile).
 */
export function activateServices(runtime: Runtime): void {
  const now = performance.now()
  for (const service of runtime.services.values()) service.selection.activate(now)
}

/** Binds a closed server again on the address it had (after a failed replacement). */
function relisten(running: RunningListener, address: AddressInfo, reusePort: boolean): Promise<void> {
  return new Promise((resolve) => {
    running.server.once('error', () => resolve())
    running.server.listen({ port: address.port, host: address.address, reusePort }, () => resolve())
  })
}
