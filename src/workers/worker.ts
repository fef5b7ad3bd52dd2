/**
 * A worker thread: compiles its own snapshot from the config the main thread
 * sends, serves it on every listener with SO_REUSEPORT, and follows the main
 * thread's orders (prepare / commit / abort a reload, health verdicts, stop).
 * It neither reads the config file nor runs health checks: those happen once,
 * on the main thread (gateway.ts).
 */
import { parentPort, workerData } from 'node:worker_threads'
import pino from 'pino'
import { startBufferValve } from '../observability/buffer-valve.ts'
import { builtinPlugins } from '../plugins/index.ts'
import { compile } from '../runtime/compile.ts'
import type { Runtime } from '../runtime/runtime.ts'
import { type PreparedSwap, Serving } from '../serving.ts'
import { MemoryStore } from '../stores/memory.ts'
import type { Target } from '../upstreams/target.ts'
import { applyEjection, applyHealth } from './health-sync.ts'
import { errorInfo, type FromWorker, type ToWorker, type WorkerInit } from './messages.ts'

const init = workerData as WorkerInit
const port = parentPort!
const send = (message: FromWorker) => port.postMessage(message)
const logger = pino(
  {
    base: { worker: init.index },
    level: init.logLevel,
    timestamp: pino.stdTimeFunctions.isoTime,
  },
  pino.destination({ fd: 2, sync: true }),
)
const plugins = builtinPlugins()
/** The main thread's store, seen from here: a counter is exact whatever thread counts. */
const store = MemoryStore.attach(init.store)
const ticketKeys = Buffer.from(init.ticketKeys)
/** This thread's passive ejections go to the main thread, which passes them to the other threads. */
const onEject = (service: string, target: Target, forMs: number) =>
  send({
    type: 'ejected',
    entry: { service, origin: target.origin, forMs, ejections: target.state.ejections },
  })

let serving: Serving
try {
  const runtime = compile(init.config, {
    plugins,
    logger,
    previous: null,
    version: init.version,
    onEject,
    store,
    ticketKeys,
  })
  applyHealth(runtime, init.health)
  serving = await Serving.start(runtime, { reusePort: true }, init.ports)
} catch (error) {
  send({ type: 'start-failed', error: errorInfo(error) })
  process.exit(1)
}
// Socket buffers are allocated on the thread that reads: each serving thread runs its own valve.
const valve = startBufferValve()
send({ type: 'ready', ports: serving.portsByKey(), portsByName: serving.ports() })

/** Prepared snapshots waiting for the main thread's commit or abort, by transaction id. */
const prepared = new Map<number, PreparedSwap>()

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'prepare':
      void prepare(message)
      return
    case 'commit':
      prepared.get(message.id)?.commit()
      prepared.delete(message.id)
      return
    case 'abort': {
      const swap = prepared.get(message.id)
      prepared.delete(message.id)
      void swap?.abort()
      return
    }
    case 'health':
      applyHealth(serving.runtime, message.entries)
      return
    case 'eject':
      applyEjection(serving.runtime, message.entry)
      return
    case 'stats':
      send({
        type: 'stats',
        id: message.id,
        stats: { inflight: serving.inflight, version: serving.runtime.version },
      })
      return
    case 'stop':
      void stop(message.graceMs)
      return
  }
})

async function prepare(message: Extract<ToWorker, { type: 'prepare' }>): Promise<void> {
  let next: Runtime
  try {
    next = compile(message.config, {
      plugins,
      logger,
      previous: serving.runtime,
      version: message.version,
      onEject,
      store,
      ticketKeys,
    })
    // Targets carried over keep their state (and the verdicts already sent); new ones start up, as on the main thread.
    serving.assignPorts(message.ports)
    const swap = await serving.prepare(next)
    prepared.set(message.id, swap)
    send({ type: 'prepared', id: message.id, ports: swap.ports })
  } catch (error) {
    send({ type: 'prepare-failed', id: message.id, error: errorInfo(error) })
  }
}

async function stop(graceMs: number): Promise<void> {
  const cut = await serving.stop(graceMs)
  valve.stop()
  send({ type: 'stopped', cut })
  port.close()
  process.exit(0)
}
