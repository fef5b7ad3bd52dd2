/**
 * The pieces of a retry that are not the exchange itself: which failures are
 * worth another try, how long to wait before it, and keeping a small request
 * body so the next try can send it again. forward.ts runs the loop.
 */
import type { RetryCondition } from '../config/types.ts'
import { bodyChunks } from '../upstreams/http1/handler.ts'

/**
 * The retry condition a failed try meets, or null when it is not retried.
 * Read from the raw error (the pool's / socket codes), before upstreamError maps
 * it: a connect failure means the target never saw the request; a reset
 * (closed before any response byte) or a response-head timeout may have
 * reached it, which only idempotent methods tolerate (RFC 9110 §9.2.2).
 */
export function retryCondition(error: unknown): RetryCondition | null {
  const code = (error as { code?: unknown } | null)?.code
  switch (code) {
    case 'ECONNREFUSED':
    case 'UPSTREAM_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'connect-failure'
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset'
    case 'UPSTREAM_CLOSED':
      // Closed before any response byte is a reset; mid-body, the response had started and is not retried.
      return 'reset'
    case 'UPSTREAM_HEADERS_TIMEOUT':
      return 'timeout'
  }
  return null
}

/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential
 * backoff and jitter"): uniform in [0, min(max, base x 2^(retry-1))), so
 * clients that failed together do not come back together. `retry` counts from 1.
 */
export function backoffMs(retry: number, baseMs: number, maxMs: number, random = Math.random): number {
  return random() * Math.min(maxMs, baseMs * 2 ** (retry - 1))
}

/** A request body read up to a limit: whole (kept for retries), or too big (to stream on, never retried). */
export type KeptBody =
  | { readonly whole: true; readonly body: Buffer }
  | { readonly whole: false; readonly body: AsyncIterable<Buffer> }

/**
 * Reads `source` until it ends or passes `limit` bytes. Past the limit the
 * chunks read so far and the rest of the source are handed back as one
 * stream, so nothing is read twice and nothing is lost. Rejects with the
 * source's error (a 413 from the body limit, a client that went away).
 */
export async function keepBody(source: AsyncIterable<Buffer>, limit: number): Promise<KeptBody> {
  const iterator = bodyChunks(source)
  const chunks: Buffer[] = []
  let size = 0
  for (;;) {
    const next = await iterator.next()
    if (next.done) return { whole: true, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size) }
    chunks.push(next.value)
    size += next.value.length
    if (size > limit) return { whole: false, body: rest(chunks, iterator) }
  }
}

async function* rest(chunks: Buffer[], iterator: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  let ended = false
  try {
    yield* chunks
    chunks.length = 0
    for (;;) {
      const next = await iterator.next()
      if (next.done) {
        ended = true
        return
      }
      yield next.value
    }
  } finally {
    // Stopped before the end (the source failed): let it go.
    if (!ended) await iterator.return?.()
  }
}
