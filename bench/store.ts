/**
 * `node bench/store.ts`: operations per second of the memory Store
 * (src/stores/memory.ts), on this thread and from 2 worker threads at once on
 * one table. Figures for docs/store.md; nothing asserts them. Quote ratios:
 * the machine is shared.
 *
 *   node bench/store.ts [--ops 2000000] [--rounds 5]
 *
 * Each figure is the median of the rounds. "hot key": every operation on
 * one key (one shard, so threads take turns on one lock: the rate limit of
 * one route). "1,024 keys": keys spread over the shards (per-client limits).
 */
import { isMainThread, parentPort, Worker } from 'node:worker_threads'
import { MemoryStore } from '../src/stores/memory.ts'

interface WorkerJob {
  buffer: SharedArrayBuffer
  barrier: SharedArrayBuffer
  keys: string[]
  ops: number
}

const KEYS = Array.from({ length: 1024 }, (_, i) => `rl:api:client-${i}`)
const HOT = ['rl:api:global']

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(name)
  return at === -1 ? fallback : Number(process.argv[at + 1])
}

function incrementLoop(store: MemoryStore, keys: string[], ops: number): void {
  const mask = keys.length - 1
  for (let i = 0; i < ops; i++) store.increment(keys[i & mask], 1, 60_000)
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

function format(opsPerSecond: number): string {
  return `${(opsPerSecond / 1e6).toFixed(2)} M ops/s`.padStart(14)
}

/** ops/s of `run` on this thread, median of `rounds`. */
function onThisThread(rounds: number, ops: number, run: () => void): number {
  run() // warm-up: let the JIT settle before measuring
  const rates: number[] = []
  for (let round = 0; round < rounds; round++) {
    const start = performance.now()
    run()
    rates.push(ops / ((performance.now() - start) / 1000))
  }
  return median(rates)
}

/** Total ops/s of `threads` workers incrementing `keys` on one table, from release to the last one done. */
async function onThreads(threads: number, rounds: number, ops: number, keys: string[]): Promise<number> {
  const rates: number[] = []
  const workers = Array.from({ length: threads }, () => new Worker(new URL(import.meta.url)))
  try {
    for (let round = -1; round < rounds; round++) {
      const store = MemoryStore.create()
      const barrier = new SharedArrayBuffer(8)
      const words = new Int32Array(barrier)
      const done = workers.map(
        (worker) =>
          new Promise<void>((resolve, reject) => {
            worker.once('message', () => resolve())
            worker.once('error', reject)
            worker.postMessage({ buffer: store.buffer, barrier, keys, ops } satisfies WorkerJob)
          }),
      )
      while (Atomics.load(words, 0) < threads) await new Promise((resolve) => setTimeout(resolve, 1))
      const start = performance.now()
      Atomics.store(words, 1, 1)
      Atomics.notify(words, 1)
      await Promise.all(done)
      const seconds = (performance.now() - start) / 1000
      const total = keys.reduce((sum, key) => sum + Number(store.get(key)?.value ?? 0), 0)
      if (total !== threads * ops) throw new Error(`counted ${total}, expected ${threads * ops}`)
      if (round >= 0) rates.push((threads * ops) / seconds) // round -1 warms the workers up
    }
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()))
  }
  return median(rates)
}

async function main(): Promise<void> {
  const ops = option('--ops', 2_000_000)
  const rounds = option('--rounds', 5)
  const store = MemoryStore.create()
  process.stdout.write(`memory store, node ${process.version}, ${ops} ops x ${rounds} rounds (median)\n`)
  const rows: [string, number][] = [
    ['increment, 1 thread, hot key', onThisThread(rounds, ops, () => incrementLoop(store, HOT, ops))],
    ['increment, 1 thread, 1,024 keys', onThisThread(rounds, ops, () => incrementLoop(store, KEYS, ops))],
    [
      'get, 1 thread, 1,024 keys',
      onThisThread(rounds, ops, () => {
        for (let i = 0; i < ops; i++) store.get(KEYS[i & 1023])
      }),
    ],
    [
      'Map counter, 1 thread (no sharing, reference)',
      onThisThread(rounds, ops, () => {
        const map = new Map<string, number>()
        for (let i = 0; i < ops; i++) {
          const key = KEYS[i & 1023]
          map.set(key, (map.get(key) ?? 0) + 1)
        }
      }),
    ],
  ]
  for (const [label, rate] of rows) process.stdout.write(`${label.padEnd(48)}${format(rate)}\n`)
  for (const [label, keys] of [
    ['hot key', HOT],
    ['1,024 keys', KEYS],
  ] as const) {
    const rate = await onThreads(2, rounds, ops, keys)
    process.stdout.write(`${`increment, 2 threads, ${label} (total)`.padEnd(48)}${format(rate)}\n`)
  }
}

function worker(): void {
  parentPort?.on('message', (job: WorkerJob) => {
    const store = MemoryStore.attach(job.buffer)
    const words = new Int32Array(job.barrier)
    Atomics.add(words, 0, 1)
    Atomics.wait(words, 1, 0)
    incrementLoop(store, job.keys, job.ops)
    parentPort?.postMessage('done')
  })
}

if (isMainThread) await main()
else worker()
