/**
 * A worker thread for the multi-thread tests of the memory store
 * (memory.threads.test.ts): it attaches tables the main thread created and
 * either makes single calls (so the contract suite can run across threads)
 * or runs a bounded hammer loop and reports what it saw. Not used by the
 * gateway. Import only its types: importing it runs the worker loop.
 */
import { parentPort } from 'node:worker_threads'
import { MemoryStore } from './memory.ts'
import { StoreError } from './store.ts'

/** Clock the main thread moves: one BigInt64 in a SharedArrayBuffer, epoch ms. */
type ClockBuffer = SharedArrayBuffer

export type Task =
  | { kind: 'increment'; keys: string[]; iterations: number; ttlMs: number }
  | { kind: 'limit'; key: string; attempts: number; limit: number; ttlMs: number }
  | { kind: 'cas'; key: string; wins: number }
  | { kind: 'torn'; keys: string[]; iterations: number; thread: number }
  | { kind: 'churn'; thread: number; rounds: number; keysPerRound: number }

export type Request =
  | { id: number; type: 'attach'; store: number; buffer: SharedArrayBuffer; clock: ClockBuffer }
  | { id: number; type: 'detach'; store: number }
  | { id: number; type: 'call'; store: number; method: string; args: unknown[] }
  | { id: number; type: 'run'; store: number; task: Task; barrier: SharedArrayBuffer }
  | { id: number; type: 'hold'; buffer: SharedArrayBuffer; signal: SharedArrayBuffer; key: string }

export type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { name: string; code?: string; message: string } }

/** The value thread `thread` writes at step `step`: self-describing, so a torn read cannot pass for a real one. */
function tornValue(thread: number, step: number): string {
  const fill = thread % 2 === 0 ? String.fromCharCode(97 + (step % 26)) : 'é'
  const head = `${thread}.${step}.`
  // 12 to 60 UTF-8 bytes, varying with every write, under the tests' maxValueBytes of 64.
  const bytes = 12 + ((thread * 7 + step * 13) % 49)
  const fills = Math.floor((bytes - head.length) / (fill === 'é' ? 2 : 1))
  return head + fill.repeat(Math.max(0, fills))
}

/** The TTL paired with a torn-test value: a torn entry would pair one write's value with another's expiry. */
function tornTtl(thread: number, step: number): number {
  return 1000 + ((thread * 1009 + step) % 5000)
}

function clockOf(clock: ClockBuffer): () => number {
  const time = new BigInt64Array(clock)
  return () => Number(Atomics.load(time, 0))
}

/** Counts up `barrier[0]`, then waits for the main thread to set `barrier[1]`, so all threads start together. */
function startTogether(barrier: SharedArrayBuffer): void {
  const words = new Int32Array(barrier)
  Atomics.add(words, 0, 1)
  Atomics.notify(words, 0)
  Atomics.wait(words, 1, 0, 10_000)
}

function run(store: MemoryStore, task: Task, now: () => number): unknown {
  switch (task.kind) {
    case 'increment': {
      for (let i = 0; i < task.iterations; i++)
        store.increment(task.keys[i % task.keys.length], 1, task.ttlMs)
      return task.iterations
    }
    case 'limit': {
      let admitted = 0
      for (let i = 0; i < task.attempts; i++) {
        if (store.increment(task.key, 1, task.ttlMs).value <= task.limit) admitted++
      }
      return admitted
    }
    case 'cas': {
      let wins = 0
      let losses = 0
      // Bounded: a thread that loses this often means the store is broken, not slow.
      for (let attempt = 0; wins < task.wins && attempt < task.wins * 1000; attempt++) {
        const current = store.get(task.key)
        const next = String((current === null ? 0 : Number(current.value)) + 1)
        if (store.compareAndSet(task.key, current?.value ?? null, next, 60_000)) wins++
        else losses++
      }
      return { wins, losses }
    }
    case 'torn': {
      const problems: string[] = []
      let reads = 0
      let values = 0
      const check = (key: string, entry: { value: string; expiresAt: number } | null) => {
        reads++
        if (entry === null) return
        values++
        const match = /^(\d+)\.(\d+)\./.exec(entry.value)
        const thread = Number(match?.[1])
        const step = Number(match?.[2])
        if (match === null || entry.value !== tornValue(thread, step)) {
          problems.push(`${key}: torn value ${JSON.stringify(entry.value)}`)
        } else if (entry.expiresAt !== now() + tornTtl(thread, step)) {
          problems.push(`${key}: value ${entry.value} with expiry ${entry.expiresAt}`)
        }
      }
      for (let step = 0; step < task.iterations && problems.length < 5; step++) {
        const key = task.keys[(step * 7 + task.thread) % task.keys.length]
        const value = tornValue(task.thread, step)
        const ttl = tornTtl(task.thread, step)
        switch (step % 5) {
          case 0:
            store.set(key, value, ttl)
            break
          case 1:
          case 2:
            check(key, store.get(key))
            break
          case 3: {
            const current = store.get(key)
            check(key, current)
            store.compareAndSet(key, current?.value ?? null, value, ttl)
            break
          }
          default:
            if (step % 3 === 0) store.delete(key)
            else check(key, store.get(key))
        }
      }
      return { problems, reads, values }
    }
    case 'churn': {
      const problems: string[] = []
      for (let round = 0; round < task.rounds && problems.length < 5; round++) {
        const keys = Array.from({ length: task.keysPerRound }, (_, i) => `churn:${task.thread}:${round}:${i}`)
        for (const [i, key] of keys.entries()) store.set(key, `${round}:${i}`, 60_000)
        for (const [i, key] of keys.entries()) {
          if (store.get(key)?.value !== `${round}:${i}`) problems.push(`${key} lost after insert`)
        }
        for (const [i, key] of keys.entries()) {
          if (i % 2 === 0 && !store.delete(key)) problems.push(`${key} not there to delete`)
        }
        for (const [i, key] of keys.entries()) {
          const seen = store.get(key)?.value
          if (seen !== (i % 2 === 0 ? undefined : `${round}:${i}`))
            problems.push(`${key}: ${seen} after deletes`)
        }
        for (const [i, key] of keys.entries()) if (i % 2 === 1) store.delete(key)
      }
      return problems
    }
  }
}

/** Freezes inside an operation (in `now`, under the shard lock) until the main thread terminates this worker. */
function hold(buffer: SharedArrayBuffer, signal: SharedArrayBuffer, key: string): never {
  const words = new Int32Array(signal)
  const store = MemoryStore.attach(buffer, {
    now: () => {
      Atomics.store(words, 0, 1)
      Atomics.notify(words, 0)
      for (;;) Atomics.wait(words, 1, 0)
    },
  })
  store.increment(key, 1, 60_000)
  throw new Error('unreachable: hold returned')
}

function serve(): void {
  const port = parentPort
  if (port === null) throw new Error('memory.worker.ts runs as a worker thread')
  const stores = new Map<number, { store: MemoryStore; now: () => number }>()
  port.on('message', (request: Request) => {
    let reply: Reply
    try {
      let result: unknown
      if (request.type === 'attach') {
        const now = clockOf(request.clock)
        stores.set(request.store, { store: MemoryStore.attach(request.buffer, { now }), now })
      } else if (request.type === 'detach') {
        stores.delete(request.store)
      } else if (request.type === 'hold') {
        hold(request.buffer, request.signal, request.key)
      } else {
        const entry = stores.get(request.store)
        if (entry === undefined) throw new Error(`store ${request.store} not attached`)
        if (request.type === 'call') {
          const method = entry.store[request.method as 'get'] as (...args: unknown[]) => unknown
          result = method.apply(entry.store, request.args)
        } else {
          startTogether(request.barrier)
          result = run(entry.store, request.task, entry.now)
        }
      }
      reply = { id: request.id, ok: true, result }
    } catch (error) {
      const { name, message } = error as Error
      const code = error instanceof StoreError ? error.code : undefined
      reply = { id: request.id, ok: false, error: { name, message, code } }
    }
    port.postMessage(reply)
  })
}

serve()
