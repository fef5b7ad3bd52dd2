/**
 * The memory store seen from several worker threads at once: the contract
 * suite with its operations spread over threads, then bounded hammer loops
 * that start together (a barrier) and must end exact. Four threads on a
 * two-core machine also exercise the lock's sleeping path (a holder
 * descheduled mid-operation).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { eventually } from '../../test/helpers/eventually.ts'
import { storeContract } from './contract.ts'
import { MemoryStore } from './memory.ts'
import type { Reply, Request, Task } from './memory.worker.ts'
import { type Store, StoreError } from './store.ts'

const THREADS = 4
const WORKER_SCRIPT = new URL('./memory.worker.ts', import.meta.url)

type Outgoing = Request extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never

/** One worker thread, asked things by message and answering by id. */
class StoreThread {
  readonly worker: Worker
  #nextId = 1
  readonly #pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>()

  constructor() {
    this.worker = new Worker(WORKER_SCRIPT)
    this.worker.on('message', (reply: Reply) => {
      const pending = this.#pending.get(reply.id)
      this.#pending.delete(reply.id)
      if (reply.ok) pending?.resolve(reply.result)
      else pending?.reject(revive(reply.error))
    })
    this.worker.on('error', (error: Error) => {
      for (const pending of this.#pending.values()) pending.reject(error)
      this.#pending.clear()
    })
  }

  ask<T>(request: Outgoing): Promise<T> {
    const id = this.#nextId++
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject })
      this.worker.postMessage({ ...request, id })
    })
  }
}

/** The error a worker reported, as the same class (StoreError with its code, RangeError, ...). */
function revive(error: { name: string; code?: string; message: string }): Error {
  if (error.code !== undefined) return new StoreError(error.code as StoreError['code'], error.message)
  if (error.name === 'RangeError') return new RangeError(error.message)
  return new Error(`${error.name}: ${error.message}`)
}

let threads: StoreThread[] = []
let nextStore = 1

function startThreads(): StoreThread[] {
  if (threads.length === 0) threads = Array.from({ length: THREADS }, () => new StoreThread())
  return threads
}

after(async () => {
  await Promise.all(threads.map((thread) => thread.worker.terminate()))
})

/** A table created here, attached in every worker, on a clock this thread moves. */
async function sharedTable(options: { capacity?: number; now?: number } = {}) {
  const clock = new SharedArrayBuffer(8)
  const time = new BigInt64Array(clock)
  const setTime = (ms: number) => Atomics.store(time, 0, BigInt(ms))
  setTime(options.now ?? Date.UTC(2026, 10, 23))
  const store = MemoryStore.create({
    capacity: options.capacity ?? 4096,
    now: () => Number(Atomics.load(time, 0)),
  })
  const id = nextStore++
  await Promise.all(
    startThreads().map((thread) => thread.ask({ type: 'attach', store: id, buffer: store.buffer, clock })),
  )
  return { id, store, setTime }
}

/** Runs one task per thread, all released together; answers each thread's result. */
async function hammer<T>(storeId: number, taskFor: (thread: number) => Task): Promise<T[]> {
  const barrier = new SharedArrayBuffer(8)
  const words = new Int32Array(barrier)
  const results = startThreads().map((thread, i) =>
    thread.ask<T>({ type: 'run', store: storeId, task: taskFor(i), barrier }),
  )
  await eventually(() => Atomics.load(words, 0) === THREADS, { timeout: 20_000 })
  Atomics.store(words, 1, 1)
  Atomics.notify(words, 1)
  return Promise.all(results)
}

/** The Store interface over worker threads: each call goes to the next thread, answered by promise. */
function threadedStore(id: number, clock: { setTime(ms: number): void }, now: () => number): Store {
  let turn = 0
  const call = <T>(method: keyof Store, ...args: unknown[]) => {
    // The contract's clock lives in this thread; copy it where the workers read time.
    clock.setTime(now())
    return threads[turn++ % threads.length].ask<T>({ type: 'call', store: id, method, args })
  }
  return {
    increment: (key, by, ttlMs) => call('increment', key, by, ttlMs),
    get: (key) => call('get', key),
    set: (key, value, ttlMs) => call('set', key, value, ttlMs),
    compareAndSet: (key, expected, value, ttlMs) => call('compareAndSet', key, expected, value, ttlMs),
    delete: (key) => call('delete', key),
    close: () =>
      Promise.all(threads.map((thread) => thread.ask({ type: 'detach', store: id }))).then(() => {}),
  }
}

storeContract(`MemoryStore (each call on the next of ${THREADS} worker threads)`, async (now) => {
  const { id, setTime } = await sharedTable({ capacity: 1024 })
  return threadedStore(id, { setTime }, now)
})

describe(`MemoryStore under ${THREADS} threads at once`, { timeout: 60_000 }, () => {
  before(() => startThreads())

  it('N threads x M increments of one key count exactly N x M', async () => {
    const { id, store } = await sharedTable()
    const iterations = 20_000
    await hammer(id, () => ({ kind: 'increment', keys: ['hot'], iterations, ttlMs: 60_000 }))
    assert.equal(store.get('hot')?.value, String(THREADS * iterations))
  })

  it('increments spread over 64 keys (every shard) count exactly per key', async () => {
    const { id, store } = await sharedTable({ capacity: 65_536 })
    const keys = Array.from({ length: 64 }, (_, i) => `client:${i}`)
    const iterations = 64 * 250
    await hammer(id, () => ({ kind: 'increment', keys, iterations, ttlMs: 60_000 }))
    for (const key of keys) assert.equal(store.get(key)?.value, String(THREADS * 250), key)
  })

  it('a limit of 100 per window admits exactly 100 out of 20,000 attempts across threads', async () => {
    const { id, store } = await sharedTable()
    const admitted = await hammer<number>(id, () => ({
      kind: 'limit',
      key: 'route:login',
      attempts: 5000,
      limit: 100,
      ttlMs: 60_000,
    }))
    assert.equal(
      admitted.reduce((sum, n) => sum + n, 0),
      100,
      `admitted per thread: ${admitted.join(', ')}`,
    )
    assert.equal(store.get('route:login')?.value, String(THREADS * 5000))
  })

  it('get -> compareAndSet(+1) loops racing on one key end exact', async () => {
    const { id, store } = await sharedTable()
    const wins = 1500
    const results = await hammer<{ wins: number; losses: number }>(id, () => ({
      kind: 'cas',
      key: 'n',
      wins,
    }))
    for (const result of results) assert.equal(result.wins, wins)
    assert.equal(store.get('n')?.value, String(THREADS * wins))
  })

  it('set / get / compareAndSet / delete on shared keys never read a torn value or expiry', async () => {
    const { id } = await sharedTable({ capacity: 64 })
    const keys = ['a', 'b', 'c']
    const results = await hammer<{ problems: string[]; reads: number; values: number }>(id, (thread) => ({
      kind: 'torn',
      keys,
      iterations: 20_000,
      thread,
    }))
    for (const result of results) {
      assert.deepEqual(result.problems, [])
      assert.ok(result.values > 0, 'no read ever saw a value')
    }
  })

  it('inserts and deletes in one small shard from every thread lose no key', async () => {
    const { id, store } = await sharedTable({ capacity: 512 })
    const results = await hammer<string[]>(id, (thread) => ({
      kind: 'churn',
      thread,
      rounds: 150,
      keysPerRound: 40,
    }))
    for (const problems of results) assert.deepEqual(problems, [])
    assert.equal(store.occupancy(), 0)
  })

  it('all threads see an entry expire at the same instant, and the next window the same', async () => {
    const t0 = Date.UTC(2026, 10, 23, 12)
    const { id, store, setTime } = await sharedTable({ now: t0 })
    const keys = Array.from({ length: 50 }, (_, i) => `window:${i}`)
    const everyThread = (method: string, key: string, ...rest: unknown[]) =>
      Promise.all(
        threads.map((thread) => thread.ask({ type: 'call', store: id, method, args: [key, ...rest] })),
      )
    for (const [i, key] of keys.entries()) {
      await threads[i % THREADS].ask({ type: 'call', store: id, method: 'increment', args: [key, 1, 1000] })
    }
    setTime(t0 + 999)
    for (const key of keys) {
      assert.deepEqual(
        await everyThread('get', key),
        Array(THREADS).fill({ value: '1', expiresAt: t0 + 1000 }),
      )
    }
    setTime(t0 + 1000)
    for (const key of keys) assert.deepEqual(await everyThread('get', key), Array(THREADS).fill(null))
    // A new window, opened by one thread, is the same window for all.
    for (const [i, key] of keys.entries()) {
      const opened = await threads[(i + 1) % THREADS].ask({
        type: 'call',
        store: id,
        method: 'increment',
        args: [key, 1, 1000],
      })
      assert.deepEqual(opened, { value: 1, expiresAt: t0 + 2000 })
    }
    const seen = await everyThread('increment', keys[0], 1, 1000)
    assert.deepEqual(
      seen.map((state) => (state as { expiresAt: number }).expiresAt),
      Array(THREADS).fill(t0 + 2000),
    )
    assert.equal(store.get(keys[0])?.value, String(1 + THREADS))
  })

  it('a thread that dies holding a shard lock: waiters time out, releaseLocksHeldBy frees and empties the shard', async () => {
    const store = MemoryStore.create({ capacity: 64, lockTimeoutMs: 200 })
    store.set('other', 'kept?', 60_000)
    const signal = new SharedArrayBuffer(8)
    const frozen = new StoreThread()
    const held = frozen.ask({ type: 'hold', buffer: store.buffer, signal, key: 'victim' })
    held.catch(() => {})
    await eventually(() => Atomics.load(new Int32Array(signal), 0) === 1, { timeout: 20_000 })
    const deadThreadId = frozen.worker.threadId
    await frozen.worker.terminate()
    // One shard (capacity 64): every key waits on the dead thread's lock.
    assert.throws(
      () => store.increment('victim', 1, 1000),
      (error: unknown) => {
        assert.ok(error instanceof StoreError)
        assert.equal(error.code, 'GH_STORE_LOCK_TIMEOUT')
        assert.match(error.message, new RegExp(`held by thread ${deadThreadId} `))
        return true
      },
    )
    assert.equal(store.releaseLocksHeldBy(deadThreadId + 1), 0, 'freed a lock of a thread that holds none')
    // worker.threadId reads -1 after exit; 0 is this (main) thread: both would free locks that are not dead.
    assert.equal(frozen.worker.threadId, -1)
    assert.throws(() => store.releaseLocksHeldBy(-1), RangeError)
    assert.throws(() => store.releaseLocksHeldBy(0), RangeError)
    assert.equal(store.releaseLocksHeldBy(deadThreadId), 1)
    assert.equal(store.get('other'), null, 'the half-written shard was emptied')
    assert.equal(store.increment('victim', 1, 1000).value, 1)
    assert.equal(store.releaseLocksHeldBy(deadThreadId), 0)
  })
})
