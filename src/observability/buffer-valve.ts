/**
 * Keeps dead socket buffers from piling up while bodies stream.
 *
 * Every socket read allocates a fresh buffer (up to 64 KiB) outside the JS
 * heap. Once written on, it is garbage, but V8 only collects young objects
 * when its new space fills, and a streamed chunk adds a few hundred bytes
 * there against 64 KiB outside; the outside memory only forces a collection
 * past V8's external-memory soft limit (64 MiB). Measured: a 200 MiB upload
 * through the gateway grew its RSS by 62-74 MiB, all of it such garbage.
 *
 * The valve samples `arrayBuffers` (that outside memory) every 50 ms and runs
 * a minor (young-generation) collection when more than 8 MiB has built up:
 * the same 200 MiB then grows RSS by about 20-40 MiB, at the cost of a
 * scavenge (well under a millisecond) per 8 MiB streamed. Started by the CLI
 * process, not by the library: it is a process-wide setting.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

export interface BufferValve {
  stop(): void
}

type MinorGc = (options: { type: 'minor'; execution: 'sync' }) => void

export function startBufferValve({ thresholdBytes = 8 * 1024 * 1024, intervalMs = 50 } = {}): BufferValve {
  let gc: MinorGc
  try {
    // Exposes gc() to contexts created from now on; the program's own global stays as it was.
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as MinorGc
  } catch {
    return { stop() {} }
  }
  const timer = setInterval(() => {
    if (process.memoryUsage().arrayBuffers > thresholdBytes) gc({ type: 'minor', execution: 'sync' })
  }, intervalMs)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}
