/**
 * The one interface behind which plugins keep state that must be shared:
 * by every worker thread of one Gatehouse (`MemoryStore`, over a
 * SharedArrayBuffer) or by many Gatehouse instances (a Redis store, later).
 * No plugin keeps its own global Map of state. docs/store.md is the long form.
 *
 * One keyspace: counters and strings live side by side under the same keys,
 * as in Redis (INCRBY / GET / SET), so that a Redis store implements exactly
 * these semantics with its own commands. `get` on a counter answers its
 * decimal string; `increment` on a string that holds a decimal integer
 * continues from it, and on any other string fails with
 * GH_STORE_NOT_A_COUNTER.
 *
 * Every entry expires: `ttlMs` is required (> 0) and an entry is live while
 * `now < expiresAt`. Times are epoch milliseconds on the store's clock
 * (`now`, Date.now unless a test injects one), so `expiresAt` can become a
 * `Retry-After` or `RateLimit-Reset` header directly.
 *
 * Each operation is atomic (linearizable) with respect to every other
 * operation on the same store, whichever thread or instance makes it.
 */

/** A memory store answers synchronously (no promise, no microtask hop); a network store with promises. */
export type Awaitable<T> = T | Promise<T>

/** A counter after `increment`. */
export interface CounterState {
  /** The counter after this increment. */
  readonly value: number
  /** Epoch ms at which the counter, and so its window, ends. */
  readonly expiresAt: number
}

/** A live entry as `get` sees it. */
export interface StoredEntry {
  /** A string entry's value, or a counter's value in decimal ("42"). */
  readonly value: string
  readonly expiresAt: number
}

export interface Store {
  /**
   * Adds `by` (a safe integer, may be negative) to the counter at `key` and
   * answers the new value. When the key is absent or expired, the counter
   * starts at `by` and expires `ttlMs` from now. A live counter keeps the
   * expiry it was created with: a fixed window, whatever `ttlMs` this call
   * passes (so N calls within one window count N, and the window ends when
   * it ends). Fails with GH_STORE_NOT_A_COUNTER when the key holds a string
   * that is not a decimal integer, GH_STORE_OVERFLOW past 2^53 - 1.
   */
  increment(key: string, by: number, ttlMs: number): Awaitable<CounterState>
  /** The live entry at `key`, or null when absent or expired. */
  get(key: string): Awaitable<StoredEntry | null>
  /** Stores `value` at `key` (replacing a string or a counter), expiring `ttlMs` from now. */
  set(key: string, value: string, ttlMs: number): Awaitable<void>
  /**
   * Stores `value` (expiring `ttlMs` from now) only if the live entry at
   * `key` equals `expected` (a counter compares as its decimal string), or,
   * with `expected: null`, only if the key is absent or expired. Answers
   * whether it stored. The building block for read-modify-write state
   * (token buckets, GCRA): get, compute, compareAndSet, retry on false.
   */
  compareAndSet(key: string, expected: string | null, value: string, ttlMs: number): Awaitable<boolean>
  /** Removes `key`; answers whether a live entry was there. */
  delete(key: string): Awaitable<boolean>
  /** Releases what the store holds (connections); the memory store holds nothing to release. */
  close(): Awaitable<void>
}

/** Why a store refused an operation it understood. Arguments out of range throw RangeError instead. */
export type StoreErrorCode =
  | 'GH_STORE_FULL'
  | 'GH_STORE_KEY_TOO_LONG'
  | 'GH_STORE_VALUE_TOO_LONG'
  | 'GH_STORE_NOT_A_COUNTER'
  | 'GH_STORE_OVERFLOW'
  | 'GH_STORE_LOCK_TIMEOUT'

/**
 * Not a reply by itself: the plugin that called the store decides what the
 * client sees (a rate limiter fails closed, docs/store.md).
 */
export class StoreError extends Error {
  readonly code: StoreErrorCode
  constructor(code: StoreErrorCode, message: string) {
    super(message)
    this.name = 'StoreError'
    this.code = code
  }
}

/** Shared argument checks, so every store refuses the same calls the same way. */
export function checkTtl(ttlMs: number): void {
  if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) {
    throw new RangeError(`store: ttlMs must be a finite number > 0, got ${ttlMs}`)
  }
}

export function checkIncrement(by: number): void {
  if (!Number.isSafeInteger(by)) throw new RangeError(`store: increment needs a safe integer, got ${by}`)
}

/** Redis's rule for INCRBY on a string: an optional minus and decimal digits, nothing else. */
const DECIMAL_INTEGER = /^-?\d{1,16}$/

/** The integer a string entry holds, or null when it is not a counter. */
export function parseCounter(value: string): number | null {
  if (!DECIMAL_INTEGER.test(value)) return null
  const n = Number(value)
  return Number.isSafeInteger(n) ? n : null
}
