/**
 * The worker threads, seen from the main thread: N threads, each serving
 * every listener with SO_REUSEPORT, so the kernel spreads connections.
 *
 * - Start: the first thread binds (a port-0 listener gets its port there),
 *   then the others bind the same ports.
 * - Reload is two-phase: every thread compiles the new config and opens the
 *   listeners it needs (prepare); only when all have done so are they told
 *   to commit, else every one aborts. So all threads switch, or none does.
 * - A thread that dies is replaced with the config and health verdicts in
 *   force; the others, and their connections, are not touched. Each death
 *   is logged and counted (`restarts`).
 * - Health verdicts from the main thread's checks are sent to every thread.
 * - Stop: every thread drains within the grace period, then exits.
 *
 * The main thread keeps its own compiled snapshot of the same config (the
 * control snapshot): the health checks and upstreamStates() work on it, and
 * it is retired here when the workers commit the next one.
 */
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import { releaseUnshared } from '../runtime/compile.ts'
import type { Runtime } from '../runtime/runtime.ts'
import { activateServices, type PreparedSwap } from '../serving.ts'
import type { MemoryStore } from '../stores/memory.ts'
import { applyEjection, healthTable } from './health-sync.ts'
import {
  type EjectionEntry,
  errorFrom,
  type FromWorker,
  type HealthEntry,
  type ToWorker,
  type WorkerInit,
  type WorkerStats,
} from './messages.ts'

const WORKER_URL = new URL('./worker.ts', import.meta.url)

/** A replacement that dies again within this time waits longer before the next (doubling, capped). */
const QUICK_DEATH_MS = 5000
const RESPAWN_MAX_DELAY_MS = 30_000
/** After the grace period, how long a stopping thread may take to close before it is terminated. */
const STOP_MARGIN_MS = 5000

export interface WorkerPoolOptions {
  readonly count: number
  /** The control snapshot, already compiled on the main thread. */
  readonly runtime: Runtime
  readonly logger: Logger
  /** The memory Store, whose SharedArrayBuffer every thread attaches. */
  readonly store: MemoryStore
  /** TLS session ticket keys, the same in every thread. */
  readonly ticketKeys: Buffer
}

interface Slot {
  readonly index: number
  worker: Worker
  /** Kept from the start: Node sets worker.threadId to -1 once the thread has exited. */
  threadId: number
  startedAt: number
  /** Deaths in a row soon after start, for the respawn delay. */
  quickDeaths: number
  /** Answers awaited from this thread, by request id. */
  readonly waiting: Map<number, (message: FromWorker | null) => void>
  live: boolean
  stopping: boolean
  /** Resolves when the thread has exited. */
  exited: Promise<void>
}

export class WorkerPool {
  readonly #logger: Logger
  readonly #store: MemoryStore
  readonly #ticketKeys: Buffer
  readonly #slots: Slot[] = []
  #control: Runtime
  /** Ports of port-0 listeners by listener key, as the first thread bound them. */
  #ports: Record<string, number> = {}
  #portsByName: Record<string, number> = {}
  #ids = 0
  /** Reload transactions and replacements run one at a time, in this chain. */
  #queue: Promise<unknown> = Promise.resolve()
  #stopped = false
  /** Threads a resize retired that are still finishing their requests. */
  readonly #draining = new Set<Promise<number>>()
  /** Worker threads that died and were replaced since start. */
  restarts = 0

  private constructor(options: WorkerPoolOptions) {
    this.#logger = options.logger
    this.#store = options.store
    this.#ticketKeys = options.ticketKeys
    this.#control = options.runtime
  }

  /** Starts `count` threads on the control snapshot's config; throws (all stopped) if one cannot serve. */
  static async start(options: WorkerPoolOptions): Promise<WorkerPool> {
    const pool = new WorkerPool(options)
    activateServices(options.runtime)
    try {
      // The first binds alone: its port-0 listeners decide the port every other thread binds.
      await pool.#spawn(0)
      await Promise.all(Array.from({ length: options.count - 1 }, (_, i) => pool.#spawn(i + 1)))
    } catch (error) {
      // The control snapshot stays the caller's to release: only the threads are stopped.
      pool.#stopped = true
      await pool.#stopThreads(0)
      throw error
    }
    return pool
  }

  get runtime(): Runtime {
    return this.#control
  }

  get size(): number {
    return this.#slots.length
  }

  /** Bound ports by listener name. */
  ports(): Record<string, number> {
    return { ...this.#portsByName }
  }

  /** The threads, for operators and tests (threadId). */
  threads(): readonly Worker[] {
    return this.#slots.map((slot) => slot.worker)
  }

  /**
   * Grows or shrinks to `count` threads (a reload changed `workers`). New
   * threads serve the committed snapshot; the last threads are retired as at
   * shutdown: they stop accepting, finish their requests within `graceMs`,
   * and exit, in the background. Runs after any reload under way.
   */
  resize(count: number, graceMs: number): Promise<void> {
    const run = async () => {
      if (this.#stopped || count === this.#slots.length) return
      const from = this.#slots.length
      if (count > from) {
        const started = await Promise.allSettled(
          Array.from({ length: count - from }, (_, i) => this.#spawn(from + i)),
        )
        const failed = started.find((result) => result.status === 'rejected')
        if (failed !== undefined) {
          // All or none: the threads that did start are retired again.
          for (const slot of this.#slots.splice(from)) void this.#stopSlot(slot, 0)
          throw (failed as PromiseRejectedResult).reason
        }
      } else {
        // Out of the pool at once (no later reload includes them); they drain in the background.
        for (const slot of this.#slots.splice(count)) {
          const draining = this.#stopSlot(slot, graceMs).finally(() => this.#draining.delete(draining))
          this.#draining.add(draining)
        }
      }
      this.#logger.info({ from, to: count }, 'worker threads resized')
    }
    const done = this.#queue.then(run)
    this.#queue = done.catch((error: unknown) =>
      this.#logger.error({ err: error }, 'resizing the worker threads failed'),
    )
    return done
  }

  /** What each live thread reports (requests in flight, snapshot version). */
  async stats(): Promise<WorkerStats[]> {
    const answers = await Promise.all(
      this.#liveSlots().map((slot) => this.#ask(slot, (id) => ({ type: 'stats', id }))),
    )
    return answers.flatMap((m) => (m?.type === 'stats' ? [m.stats] : []))
  }

  /** A verdict of the main thread's health checks, for every thread. */
  health(entries: readonly HealthEntry[]): void {
    for (const slot of this.#liveSlots())
      slot.worker.postMessage({ type: 'health', entries } satisfies ToWorker)
  }

  /**
   * Every thread compiles `next` (compiled here already, so its config is
   * known to be valid) and opens its listeners. Rejects, with every thread
   * still serving the current snapshot, when one cannot; else the caller
   * commits or aborts, and nothing else runs on the pool until it does.
   */
  prepare(next: Runtime): Promise<PreparedSwap> {
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const turn = this.#queue.then(() => this.#prepare(next, release))
    this.#queue = turn.then(
      () => held,
      () => undefined,
    )
    return turn
  }

  async #prepare(next: Runtime, release: () => void): Promise<PreparedSwap> {
    if (this.#stopped) {
      release()
      throw new Error('the gateway is stopping')
    }
    const id = ++this.#ids
    const message = (ports: Record<string, number>): ToWorker => ({
      type: 'prepare',
      id,
      config: next.config,
      version: next.version,
      ports,
    })
    const slots = this.#liveSlots()
    const prepared: Slot[] = []
    const abortAll = () => {
      for (const slot of prepared) slot.worker.postMessage({ type: 'abort', id } satisfies ToWorker)
    }
    let ports = this.#ports
    try {
      const [first, ...rest] = slots
      // The first again alone: a new port-0 listener gets its port there.
      ports = { ...ports, ...(await this.#prepareOn(first, id, message(ports))) }
      prepared.push(first)
      const results = await Promise.allSettled(rest.map((slot) => this.#prepareOn(slot, id, message(ports))))
      results.forEach((result, i) => {
        if (result.status === 'fulfilled') prepared.push(rest[i])
      })
      const failed = results.find((r) => r.status === 'rejected')
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason
    } catch (error) {
      abortAll()
      void releaseUnshared(next, this.#control)
      release()
      throw error
    }
    let settled = false
    return {
      commit: () => {
        if (settled) return
        settled = true
        for (const slot of prepared) slot.worker.postMessage({ type: 'commit', id } satisfies ToWorker)
        this.#ports = ports
        const old = this.#control
        this.#control = next
        activateServices(next)
        // The control snapshot serves no request: its pools never connected; its plugins close now.
        void releaseUnshared(old, next)
        release()
      },
      abort: async () => {
        if (settled) return
        settled = true
        abortAll()
        void releaseUnshared(next, this.#control)
        release()
      },
    }
  }

  async #prepareOn(slot: Slot, id: number, message: ToWorker): Promise<Record<string, number>> {
    const answer = await this.#ask(slot, () => message, id)
    if (answer === null) throw new Error(`worker ${slot.index} exited while preparing the new configuration`)
    if (answer.type === 'prepare-failed') throw errorFrom(answer.error)
    return answer.type === 'prepared' ? answer.ports : {}
  }

  /**
   * Stops every thread: each stops accepting, finishes its requests within
   * the grace period, cuts the rest and exits. Returns the requests cut.
   */
  async stop(graceMs: number): Promise<number> {
    this.#stopped = true
    const cut = await this.#stopThreads(graceMs)
    await releaseUnshared(this.#control, null)
    return cut
  }

  async #stopThreads(graceMs: number): Promise<number> {
    const cuts = await Promise.all([
      ...this.#slots.map((slot) => this.#stopSlot(slot, graceMs)),
      ...this.#draining,
    ])
    return cuts.reduce((sum, cut) => sum + cut, 0)
  }

  /** Drains one thread and waits for it to exit (terminated past the grace period); returns the requests cut. */
  async #stopSlot(slot: Slot, graceMs: number): Promise<number> {
    slot.stopping = true
    if (!slot.live) {
      await slot.worker.terminate()
      return 0
    }
    const timer = setTimeout(() => void slot.worker.terminate(), graceMs + STOP_MARGIN_MS)
    const answer = await this.#ask(slot, () => ({ type: 'stop', graceMs }), 0)
    await slot.exited
    clearTimeout(timer)
    return answer?.type === 'stopped' ? answer.cut : 0
  }

  #liveSlots(): Slot[] {
    return this.#slots.filter((slot) => slot.live && !slot.stopping)
  }

  /** Sends a message and waits for the answer with the same id (null if the thread exits first). */
  #ask(slot: Slot, build: (id: number) => ToWorker, fixedId?: number): Promise<FromWorker | null> {
    const id = fixedId ?? ++this.#ids
    return new Promise((resolve) => {
      slot.waiting.set(id, resolve)
      slot.worker.postMessage(build(id))
    })
  }

  /** Starts the thread for slot `index` (first start or replacement); resolves once it serves. */
  #spawn(index: number): Promise<void> {
    const init: WorkerInit = {
      index,
      config: this.#control.config,
      version: this.#control.version,
      health: healthTable(this.#control),
      ports: this.#ports,
      logLevel: this.#logger.level,
      store: this.#store.buffer,
      ticketKeys: this.#ticketKeys,
    }
    const worker = new Worker(WORKER_URL, { workerData: init, stdout: false, stderr: false })
    const previous = this.#slots[index]
    let exited!: () => void
    const slot: Slot = {
      index,
      worker,
      threadId: worker.threadId,
      startedAt: Date.now(),
      quickDeaths: previous?.quickDeaths ?? 0,
      waiting: new Map(),
      live: false,
      stopping: false,
      exited: new Promise((resolve) => {
        exited = resolve
      }),
    }
    this.#slots[index] = slot
    return new Promise<void>((ready, fail) => {
      let started = false
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'ready') {
          started = true
          slot.live = true
          if (index === 0 || Object.keys(this.#portsByName).length === 0) {
            this.#ports = { ...this.#ports, ...message.ports }
            this.#portsByName = message.portsByName
          }
          ready()
          return
        }
        if (message.type === 'start-failed') {
          fail(errorFrom(message.error))
          return
        }
        if (message.type === 'ejected') {
          this.#ejected(slot, message.entry)
          return
        }
        // 'stopped' answers the stop request (id 0); the others carry their request's id.
        const id = message.type === 'stopped' ? 0 : message.id
        slot.waiting.get(id)?.(message)
        slot.waiting.delete(id)
      })
      worker.on('error', (error) => {
        // An uncaught exception in the thread; 'exit' follows.
        this.#logger.error({ err: error, worker: index }, 'worker thread failed')
      })
      worker.on('exit', (code) => {
        slot.live = false
        // A thread that died inside a store operation left its shard locked (and maybe half-written).
        const emptied = this.#store.releaseLocksHeldBy(slot.threadId)
        if (emptied > 0)
          this.#logger.warn(
            { worker: index, shards: emptied },
            'a worker thread died holding store locks: those store shards were emptied',
          )
        exited()
        for (const answer of slot.waiting.values()) answer(null)
        slot.waiting.clear()
        if (!started) {
          fail(new Error(`worker ${index} exited with code ${code} before serving`))
          return
        }
        if (slot.stopping || this.#stopped) return
        this.#replace(slot, code)
      })
    })
  }

  /** One thread ejected a target: the main thread's view and every other thread follow. */
  #ejected(from: Slot, entry: EjectionEntry): void {
    applyEjection(this.#control, entry)
    for (const slot of this.#liveSlots())
      if (slot !== from) slot.worker.postMessage({ type: 'eject', entry } satisfies ToWorker)
  }

  /** A thread died: log, count, and start another in its place once no reload is under way. */
  #replace(slot: Slot, code: number): void {
    this.restarts++
    const quick = Date.now() - slot.startedAt < QUICK_DEATH_MS
    slot.quickDeaths = quick ? slot.quickDeaths + 1 : 0
    const delayMs = quick ? Math.min(RESPAWN_MAX_DELAY_MS, 100 * 2 ** (slot.quickDeaths - 1)) : 0
    this.#logger.error(
      {
        worker: slot.index,
        threadId: slot.threadId,
        code,
        restarts: this.restarts,
        respawnInMs: delayMs,
      },
      'worker thread exited unexpectedly: starting a replacement (connections on other threads are not affected)',
    )
    const respawn = async () => {
      await new Promise((resolve) => setTimeout(resolve, delayMs))
      if (this.#stopped) return
      try {
        await this.#spawn(slot.index)
        this.#logger.info({ worker: slot.index }, 'replacement worker thread serving')
      } catch (error) {
        if (this.#stopped) return
        this.#logger.error({ err: error, worker: slot.index }, 'replacement worker thread failed to start')
        // #spawn's exit handler does not replace a thread that never served: try again, later.
        this.#replace(this.#slots[slot.index], 1)
      }
    }
    this.#queue = this.#queue.then(respawn)
  }
}
