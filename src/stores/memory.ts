/**
 * The memory Store: one fixed-size hash table in one SharedArrayBuffer, so
 * every worker thread that attaches the buffer sees (and locks) the same
 * entries, and a limit of 100 is 100 whatever the number of threads.
 *
 * Layout (all little-endian platform order; docs/store.md has the sizes):
 *
 *   header   64 B   magic, version, geometry, hash seed (attach reads it)
 *   shards   64 B each (one cache line, so locks do not share a line):
 *                   +0 lock word (Int32)  +4 slots in use (Int32)
 *                   +8 nextSweepAt (Float64: no entry expires before it)
 *                   +16 new keys since the last sweep (Int32)
 *   slots    slotBytes each, shard after shard:
 *                   +0 expiresAt (Float64)  +8 counter (Float64)
 *                   +16 hash (Uint32)  +20 key length (Uint16)
 *                   +22 value length (Uint16)  +24 kind (Uint8)
 *                   +32 key bytes [maxKeyBytes]  then value bytes [maxValueBytes]
 *
 * The table is split into shards (up to 64); a key's hash picks its shard,
 * and each shard is an open-addressing table with linear probing that never
 * leaves the shard. One lock per shard guards the shard's whole probe
 * chains, so an operation is a plain read-modify-write under one lock:
 * atomic across threads, and two threads only wait for each other when
 * their keys share a shard.
 *
 * The lock is Drepper's futex mutex ("Futexes Are Tricky", mutex 3): a CAS
 * 0 -> locked on the fast path, some spins, then Atomics.wait on the word
 * with its "contended" bit set, and unlock notifies only when that bit was
 * set. The word holds the owner's thread id, so a supervisor can free the
 * locks of a thread that died inside an operation (releaseLocksHeldBy) and a
 * waiter gives up with GH_STORE_LOCK_TIMEOUT rather than hang its event
 * loop forever.
 *
 * Deletion uses backward shifting (Knuth 6.4, Algorithm R) instead of
 * tombstones: rate-limit keys expire every window, and tombstones left by
 * that churn would lengthen every probe until the shard was rebuilt.
 * Expired entries are reused in place when a probe meets them, and swept
 * from a shard before it is declared full.
 */
import { threadId } from 'node:worker_threads'
import { FNV_OFFSET, FNV_PRIME, fmix32 } from '../hash.ts'
import {
  type CounterState,
  checkIncrement,
  checkTtl,
  parseCounter,
  type Store,
  type StoredEntry,
  StoreError,
} from './store.ts'

export interface MemoryStoreOptions {
  /** Entries the table holds (a ceiling: each shard fills on its own, docs/store.md). Default 65,536. */
  capacity?: number
  /** Longest key, in UTF-8 bytes (at most 65,535). Default 128. */
  maxKeyBytes?: number
  /** Longest string value, in UTF-8 bytes (at most 65,535). Counters take no value bytes. Default 64. */
  maxValueBytes?: number
  /** Epoch milliseconds; read once per operation, under the shard lock. Default Date.now. */
  now?: () => number
  /** How long an operation waits for a shard lock before GH_STORE_LOCK_TIMEOUT. Default 2000. */
  lockTimeoutMs?: number
}

/** What a thread that attaches an existing table may choose: the geometry comes from the buffer. */
export type AttachOptions = Pick<MemoryStoreOptions, 'now' | 'lockTimeoutMs'>

const MAGIC = 0x47485354 // "GHST"
const VERSION = 1
const HEADER_BYTES = 64
const SHARD_BYTES = 64
const SLOT_HEADER_BYTES = 32
const MAX_SHARDS = 64
/** Fewer slots per shard than this and shards fill unevenly (balls into bins): one is full while the table is at 80 %. */
const MIN_SHARD_SLOTS = 1024
const MAX_FIELD_BYTES = 0xffff
/** Keep byte offsets within int32 so index arithmetic stays small-integer fast. */
const MAX_TABLE_BYTES = 2 ** 31 - 1

// Header fields (Int32 indexes).
const H_MAGIC = 0
const H_VERSION = 1
const H_CAPACITY = 2
const H_SHARDS = 3
const H_SHARD_SLOTS = 4
const H_MAX_KEY = 5
const H_MAX_VALUE = 6
const H_SLOT_BYTES = 7
const H_SEED = 8

// Slot fields (byte offsets within a slot).
const S_EXPIRES = 0
const S_COUNTER = 8
const S_HASH = 16
const S_KEY_LENGTH = 20
const S_VALUE_LENGTH = 22
const S_KIND = 24

const EMPTY = 0
const COUNTER = 1
const STRING = 2

/** Fast-path attempts before a contended lock sleeps; a critical section is well under a microsecond. */
const SPINS = 100
/** A shard this full (of its slots) sweeps expired entries before filling another empty slot. */
const SWEEP_LOAD = 0.75
/** ... and at most once every this many new keys, so a sweep's cost (the whole shard) is spread thin. */
const SWEEP_EVERY = 64

const DEFAULTS = { capacity: 65_536, maxKeyBytes: 128, maxValueBytes: 64, lockTimeoutMs: 2000 }

interface Geometry {
  capacity: number
  shards: number
  shardSlots: number
  maxKeyBytes: number
  maxValueBytes: number
  slotBytes: number
  byteLength: number
}

function geometry(options: MemoryStoreOptions): Geometry {
  const capacity = options.capacity ?? DEFAULTS.capacity
  const maxKeyBytes = options.maxKeyBytes ?? DEFAULTS.maxKeyBytes
  const maxValueBytes = options.maxValueBytes ?? DEFAULTS.maxValueBytes
  if (!Number.isSafeInteger(capacity) || capacity < 1) {
    throw new RangeError(`memory store: capacity must be an integer >= 1, got ${capacity}`)
  }
  for (const [name, bytes] of [
    ['maxKeyBytes', maxKeyBytes],
    ['maxValueBytes', maxValueBytes],
  ] as const) {
    if (!Number.isSafeInteger(bytes) || bytes < 1 || bytes > MAX_FIELD_BYTES) {
      throw new RangeError(
        `memory store: ${name} must be an integer from 1 to ${MAX_FIELD_BYTES}, got ${bytes}`,
      )
    }
  }
  let shards = 1
  while (shards < MAX_SHARDS && shards * 2 * MIN_SHARD_SLOTS <= capacity) shards *= 2
  // One slot per shard stays empty so every probe ends (at an empty slot) without counting.
  const shardSlots = Math.ceil(capacity / shards) + 1
  const slotBytes = Math.ceil((SLOT_HEADER_BYTES + maxKeyBytes + maxValueBytes) / 8) * 8
  const byteLength = HEADER_BYTES + shards * SHARD_BYTES + shards * shardSlots * slotBytes
  if (byteLength > MAX_TABLE_BYTES) {
    throw new RangeError(
      `memory store: ${capacity} entries of ${slotBytes} bytes need ${byteLength} bytes, more than the 2 GiB a table may take`,
    )
  }
  return { capacity, shards, shardSlots, maxKeyBytes, maxValueBytes, slotBytes, byteLength }
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export class MemoryStore implements Store {
  readonly #buffer: SharedArrayBuffer
  readonly #u8: Uint8Array
  readonly #u16: Uint16Array
  readonly #u32: Uint32Array
  readonly #i32: Int32Array
  readonly #f64: Float64Array
  readonly #shardMask: number
  readonly #shardBits: number
  readonly #shardSlots: number
  readonly #slotBytes: number
  readonly #slotsStart: number
  readonly #maxKeyBytes: number
  readonly #maxValueBytes: number
  readonly #sweepFrom: number
  readonly #seed: number
  readonly #now: () => number
  readonly #lockTimeoutMs: number
  /** This thread's lock word: owner (threadId + 1) shifted left, low bit = "someone waits". */
  readonly #tag: number
  readonly capacity: number

  // Per-thread scratch: the operation's key and value as UTF-8, encoded before taking the lock.
  readonly #keyBytes: Uint8Array
  readonly #valueBytes: Uint8Array
  readonly #expectedBytes: Uint8Array
  #hash = 0
  /** True while the injected clock runs: a store call from inside it would overwrite the scratch above. */
  #inClock = false
  // Results of #probe (absolute slot numbers), kept on the instance to avoid allocating.
  #found = -1
  #free = -1

  /** A new, empty table. Hand `store.buffer` to other threads and `attach` it there. */
  static create(options: MemoryStoreOptions = {}): MemoryStore {
    const g = geometry(options)
    const buffer = new SharedArrayBuffer(g.byteLength)
    const header = new Int32Array(buffer, 0, HEADER_BYTES / 4)
    header[H_MAGIC] = MAGIC
    header[H_VERSION] = VERSION
    header[H_CAPACITY] = g.capacity
    header[H_SHARDS] = g.shards
    header[H_SHARD_SLOTS] = g.shardSlots
    header[H_MAX_KEY] = g.maxKeyBytes
    header[H_MAX_VALUE] = g.maxValueBytes
    header[H_SLOT_BYTES] = g.slotBytes
    // A per-table seed, so which keys collide cannot be worked out ahead of time (not a cryptographic defence).
    header[H_SEED] = crypto.getRandomValues(new Int32Array(1))[0]
    const f64 = new Float64Array(buffer, 0, (HEADER_BYTES + g.shards * SHARD_BYTES) / 8)
    for (let shard = 0; shard < g.shards; shard++)
      f64[(HEADER_BYTES + shard * SHARD_BYTES + 8) >> 3] = Infinity
    return new MemoryStore(buffer, options)
  }

  /** The table another thread created, seen from this thread. */
  static attach(buffer: SharedArrayBuffer, options: AttachOptions = {}): MemoryStore {
    return new MemoryStore(buffer, options)
  }

  /** Bytes a table with these options takes (its SharedArrayBuffer). */
  static byteLengthFor(options: Omit<MemoryStoreOptions, 'now' | 'lockTimeoutMs'> = {}): number {
    return geometry(options).byteLength
  }

  private constructor(buffer: SharedArrayBuffer, options: AttachOptions) {
    if (!(buffer instanceof SharedArrayBuffer) || buffer.byteLength < HEADER_BYTES) {
      throw new TypeError('memory store: attach needs the SharedArrayBuffer of a MemoryStore (store.buffer)')
    }
    const header = new Int32Array(buffer, 0, HEADER_BYTES / 4)
    if (header[H_MAGIC] !== MAGIC || header[H_VERSION] !== VERSION) {
      throw new TypeError('memory store: this SharedArrayBuffer is not a MemoryStore table of this version')
    }
    const g = geometry({
      capacity: header[H_CAPACITY],
      maxKeyBytes: header[H_MAX_KEY],
      maxValueBytes: header[H_MAX_VALUE],
    })
    if (
      g.byteLength !== buffer.byteLength ||
      g.shards !== header[H_SHARDS] ||
      g.shardSlots !== header[H_SHARD_SLOTS] ||
      g.slotBytes !== header[H_SLOT_BYTES]
    ) {
      throw new TypeError('memory store: the table header does not match the buffer (a different layout?)')
    }
    const lockTimeoutMs = options.lockTimeoutMs ?? DEFAULTS.lockTimeoutMs
    if (!(lockTimeoutMs > 0))
      throw new RangeError(`memory store: lockTimeoutMs must be > 0, got ${lockTimeoutMs}`)
    this.#buffer = buffer
    this.#u8 = new Uint8Array(buffer)
    this.#u16 = new Uint16Array(buffer)
    this.#u32 = new Uint32Array(buffer)
    this.#i32 = new Int32Array(buffer)
    this.#f64 = new Float64Array(buffer)
    this.#shardMask = g.shards - 1
    this.#shardBits = Math.log2(g.shards)
    this.#shardSlots = g.shardSlots
    this.#slotBytes = g.slotBytes
    this.#slotsStart = HEADER_BYTES + g.shards * SHARD_BYTES
    this.#maxKeyBytes = g.maxKeyBytes
    this.#maxValueBytes = g.maxValueBytes
    this.#sweepFrom = Math.floor(g.shardSlots * SWEEP_LOAD)
    this.#seed = (FNV_OFFSET ^ header[H_SEED]) >>> 0
    this.#now = options.now ?? Date.now
    this.#lockTimeoutMs = lockTimeoutMs
    this.#tag = (threadId + 1) * 2
    this.capacity = g.capacity
    this.#keyBytes = new Uint8Array(g.maxKeyBytes)
    this.#valueBytes = new Uint8Array(g.maxValueBytes)
    this.#expectedBytes = new Uint8Array(g.maxValueBytes)
  }

  /** The table's memory, to hand to worker threads (workerData) for `MemoryStore.attach`. */
  get buffer(): SharedArrayBuffer {
    return this.#buffer
  }

  get maxKeyBytes(): number {
    return this.#maxKeyBytes
  }

  get maxValueBytes(): number {
    return this.#maxValueBytes
  }

  increment(key: string, by: number, ttlMs: number): CounterState {
    checkIncrement(by)
    checkTtl(ttlMs)
    const keyLength = this.#encodeKey(key)
    const hash = this.#hash
    const shard = hash & this.#shardMask
    this.#lock(shard)
    try {
      const now = this.#readClock()
      this.#probe(shard, hash, keyLength, now)
      const f64 = this.#f64
      let at: number
      if (this.#found >= 0) {
        at = this.#offsetOf(this.#found)
        const expiresAt = f64[(at + S_EXPIRES) >> 3]
        if (expiresAt > now) {
          const current =
            this.#u8[at + S_KIND] === COUNTER ? f64[(at + S_COUNTER) >> 3] : this.#counterOf(at, key)
          const value = current + by
          if (!Number.isSafeInteger(value)) {
            throw new StoreError('GH_STORE_OVERFLOW', `store: counter "${key}" would pass 2^53 - 1`)
          }
          f64[(at + S_COUNTER) >> 3] = value
          this.#u8[at + S_KIND] = COUNTER
          return { value, expiresAt }
        }
      } else {
        at = this.#claim(shard, hash, keyLength, now, key)
      }
      const expiresAt = now + ttlMs
      f64[(at + S_COUNTER) >> 3] = by
      this.#u8[at + S_KIND] = COUNTER
      this.#setExpiry(shard, at, expiresAt)
      return { value: by, expiresAt }
    } finally {
      this.#unlock(shard)
    }
  }

  get(key: string): StoredEntry | null {
    const keyLength = this.#encodeKey(key)
    const hash = this.#hash
    const shard = hash & this.#shardMask
    this.#lock(shard)
    try {
      const now = this.#readClock()
      this.#probe(shard, hash, keyLength, now)
      if (this.#found < 0) return null
      const at = this.#offsetOf(this.#found)
      const expiresAt = this.#f64[(at + S_EXPIRES) >> 3]
      if (expiresAt <= now) {
        this.#removeAt(shard, this.#found)
        return null
      }
      return { value: this.#valueOf(at), expiresAt }
    } finally {
      this.#unlock(shard)
    }
  }

  set(key: string, value: string, ttlMs: number): void {
    checkTtl(ttlMs)
    const keyLength = this.#encodeKey(key)
    const hash = this.#hash
    const valueLength = this.#encodeValue(value, this.#valueBytes)
    if (valueLength < 0) throw this.#valueTooLong(key, value)
    const shard = hash & this.#shardMask
    this.#lock(shard)
    try {
      const now = this.#readClock()
      this.#probe(shard, hash, keyLength, now)
      const at =
        this.#found >= 0 ? this.#offsetOf(this.#found) : this.#claim(shard, hash, keyLength, now, key)
      this.#writeString(shard, at, valueLength, now + ttlMs)
    } finally {
      this.#unlock(shard)
    }
  }

  compareAndSet(key: string, expected: string | null, value: string, ttlMs: number): boolean {
    checkTtl(ttlMs)
    const keyLength = this.#encodeKey(key)
    const hash = this.#hash
    const valueLength = this.#encodeValue(value, this.#valueBytes)
    if (valueLength < 0) throw this.#valueTooLong(key, value)
    // Longer than any stored string: it can still equal a counter's decimal form, never a string.
    const expectedLength = expected === null ? -1 : this.#encodeValue(expected, this.#expectedBytes)
    const shard = hash & this.#shardMask
    this.#lock(shard)
    try {
      const now = this.#readClock()
      this.#probe(shard, hash, keyLength, now)
      let at: number
      if (this.#found >= 0) {
        at = this.#offsetOf(this.#found)
        const live = this.#f64[(at + S_EXPIRES) >> 3] > now
        if (expected === null ? live : !live || !this.#holds(at, expected, expectedLength)) return false
      } else {
        if (expected !== null) return false
        at = this.#claim(shard, hash, keyLength, now, key)
      }
      this.#writeString(shard, at, valueLength, now + ttlMs)
      return true
    } finally {
      this.#unlock(shard)
    }
  }

  delete(key: string): boolean {
    const keyLength = this.#encodeKey(key)
    const hash = this.#hash
    const shard = hash & this.#shardMask
    this.#lock(shard)
    try {
      const now = this.#readClock()
      this.#probe(shard, hash, keyLength, now)
      if (this.#found < 0) return false
      const live = this.#f64[(this.#offsetOf(this.#found) + S_EXPIRES) >> 3] > now
      this.#removeAt(shard, this.#found)
      return live
    } finally {
      this.#unlock(shard)
    }
  }

  close(): void {}

  /** Slots holding an entry (expired ones not yet reclaimed included), read without locking: for metrics. */
  occupancy(): number {
    let used = 0
    for (let shard = 0; shard <= this.#shardMask; shard++) {
      used += Atomics.load(this.#i32, (HEADER_BYTES + shard * SHARD_BYTES + 4) / 4)
    }
    return used
  }

  /**
   * For the supervisor, once a worker thread has exited (its 'exit' event):
   * frees every shard lock that thread still held, which happens only when
   * it died inside an operation (terminate(), out of memory). Such a shard
   * may be half-written, so it is emptied: the counters in it start again
   * (about 1/64 of the keys). Answers how many shards were emptied. Never
   * call it for a thread that is still running. Keep `worker.threadId` from
   * when the worker started: Node sets it to -1 once the worker has exited.
   */
  releaseLocksHeldBy(deadThreadId: number): number {
    if (!Number.isSafeInteger(deadThreadId) || deadThreadId < 0 || deadThreadId === threadId) {
      throw new RangeError(
        `memory store: releaseLocksHeldBy needs the id of another thread that has exited, got ${deadThreadId} (worker.threadId is -1 after exit: keep it from the start)`,
      )
    }
    const owner = (deadThreadId + 1) * 2
    const locks = this.#i32
    let emptied = 0
    for (let shard = 0; shard <= this.#shardMask; shard++) {
      const index = (HEADER_BYTES + shard * SHARD_BYTES) >> 2
      for (;;) {
        const word = Atomics.load(locks, index)
        if ((word & ~1) !== owner) break
        // Others cannot enter while the word is non-zero, so the shard is ours to empty.
        const first = this.#offsetOf(shard * this.#shardSlots)
        this.#u8.fill(0, first, first + this.#shardSlots * this.#slotBytes)
        locks[index + 1] = 0
        locks[index + 4] = 0
        this.#f64[(HEADER_BYTES + shard * SHARD_BYTES + 8) >> 3] = Infinity
        if (Atomics.compareExchange(locks, index, word, 0) === word) {
          Atomics.notify(locks, index)
          emptied++
          break
        }
        // A waiter set the contended bit meanwhile; the word still names the dead owner: try again.
      }
    }
    return emptied
  }

  // --- keys and values --------------------------------------------------------------------------

  /** The clock, read under the shard lock so that the order of operations on a key is the order of their times. */
  #readClock(): number {
    this.#inClock = true
    try {
      return this.#now()
    } finally {
      this.#inClock = false
    }
  }

  /** Writes the key's UTF-8 bytes to #keyBytes, its hash to #hash; answers the byte length. Every operation starts here. */
  #encodeKey(key: string): number {
    if (this.#inClock) throw new Error('memory store: called from inside its own clock (`now`)')
    const bytes = this.#keyBytes
    const length = key.length
    let h = this.#seed
    if (length <= bytes.length) {
      // Most keys are ASCII: encode and hash in one pass without calling into the encoder.
      let i = 0
      for (; i < length; i++) {
        const c = key.charCodeAt(i)
        if (c >= 0x80) break
        bytes[i] = c
        h = Math.imul(h ^ c, FNV_PRIME)
      }
      if (i === length) {
        this.#hash = fmix32(h)
        return length
      }
    }
    const { read, written } = encoder.encodeInto(key, bytes)
    if (read < length) {
      throw new StoreError(
        'GH_STORE_KEY_TOO_LONG',
        `store: key of ${Buffer.byteLength(key)} bytes is longer than maxKeyBytes (${this.#maxKeyBytes})`,
      )
    }
    h = this.#seed
    for (let i = 0; i < written; i++) h = Math.imul(h ^ bytes[i], FNV_PRIME)
    this.#hash = fmix32(h)
    return written
  }

  /** The value's UTF-8 byte length after writing it to `bytes`, or -1 when it does not fit. */
  #encodeValue(value: string, bytes: Uint8Array): number {
    const length = value.length
    if (length > bytes.length) return -1
    let i = 0
    for (; i < length; i++) {
      const c = value.charCodeAt(i)
      if (c >= 0x80) break
      bytes[i] = c
    }
    if (i === length) return length
    const { read, written } = encoder.encodeInto(value, bytes)
    return read < length ? -1 : written
  }

  #valueTooLong(key: string, value: string): StoreError {
    return new StoreError(
      'GH_STORE_VALUE_TOO_LONG',
      `store: value of ${Buffer.byteLength(value)} bytes for "${key}" is longer than maxValueBytes (${this.#maxValueBytes})`,
    )
  }

  /** A live entry's value as `get` answers it. */
  #valueOf(at: number): string {
    if (this.#u8[at + S_KIND] === COUNTER) return String(this.#f64[(at + S_COUNTER) >> 3])
    const start = at + SLOT_HEADER_BYTES + this.#maxKeyBytes
    return decoder.decode(this.#u8.subarray(start, start + this.#u16[(at + S_VALUE_LENGTH) >> 1]))
  }

  /** The integer a string entry holds, as INCRBY reads it. */
  #counterOf(at: number, key: string): number {
    const counter = parseCounter(this.#valueOf(at))
    if (counter === null) {
      throw new StoreError('GH_STORE_NOT_A_COUNTER', `store: "${key}" holds a string that is not an integer`)
    }
    return counter
  }

  /** Whether the entry at `at` equals `expected` (a counter by its decimal form, a string byte for byte). */
  #holds(at: number, expected: string, expectedLength: number): boolean {
    const u8 = this.#u8
    if (u8[at + S_KIND] === COUNTER) return String(this.#f64[(at + S_COUNTER) >> 3]) === expected
    if (expectedLength !== this.#u16[(at + S_VALUE_LENGTH) >> 1]) return false
    const start = at + SLOT_HEADER_BYTES + this.#maxKeyBytes
    const bytes = this.#expectedBytes
    for (let i = 0; i < expectedLength; i++) if (u8[start + i] !== bytes[i]) return false
    return true
  }

  #writeString(shard: number, at: number, valueLength: number, expiresAt: number): void {
    const u8 = this.#u8
    const start = at + SLOT_HEADER_BYTES + this.#maxKeyBytes
    const bytes = this.#valueBytes
    for (let i = 0; i < valueLength; i++) u8[start + i] = bytes[i]
    this.#u16[(at + S_VALUE_LENGTH) >> 1] = valueLength
    u8[at + S_KIND] = STRING
    this.#setExpiry(shard, at, expiresAt)
  }

  #setExpiry(shard: number, at: number, expiresAt: number): void {
    this.#f64[(at + S_EXPIRES) >> 3] = expiresAt
    const next = (HEADER_BYTES + shard * SHARD_BYTES + 8) / 8
    if (expiresAt < this.#f64[next]) this.#f64[next] = expiresAt
  }

  // --- the table (callers hold the shard's lock) ------------------------------------------------

  #offsetOf(slot: number): number {
    return this.#slotsStart + slot * this.#slotBytes
  }

  #homeOf(hash: number): number {
    return (hash >>> this.#shardBits) % this.#shardSlots
  }

  /**
   * Walks the key's probe chain. #found: the slot holding the key (live or
   * expired), or -1. #free when not found: the first expired entry of
   * another key on the chain (reusable in place: every slot before it is
   * occupied, so lookups still reach it), else the empty slot that ends the
   * chain.
   */
  #probe(shard: number, hash: number, keyLength: number, now: number): void {
    const u8 = this.#u8
    const slots = this.#shardSlots
    const first = shard * slots
    const keyBytes = this.#keyBytes
    let i = this.#homeOf(hash)
    let free = -1
    // Bounded by the shard size; the loop ends earlier at the empty slot every shard keeps.
    for (let steps = 0; steps < slots; steps++) {
      const at = this.#offsetOf(first + i)
      const kind = u8[at + S_KIND]
      if (kind === EMPTY) {
        this.#found = -1
        this.#free = free >= 0 ? free : first + i
        return
      }
      if (this.#u32[(at + S_HASH) >> 2] === hash && this.#u16[(at + S_KEY_LENGTH) >> 1] === keyLength) {
        const keyStart = at + SLOT_HEADER_BYTES
        let k = 0
        while (k < keyLength && u8[keyStart + k] === keyBytes[k]) k++
        if (k === keyLength) {
          this.#found = first + i
          return
        }
      }
      if (free < 0 && this.#f64[(at + S_EXPIRES) >> 3] <= now) free = first + i
      i = i + 1 === slots ? 0 : i + 1
    }
    throw new Error(`memory store: shard ${shard} has no empty slot (table corrupted)`)
  }

  /**
   * A slot for a new key (after #probe did not find it), with the key
   * written; GH_STORE_FULL when the shard has none. Before taking an empty
   * slot, expired entries are swept: always when the shard is full, and
   * when it is fuller than SWEEP_LOAD at most once every SWEEP_EVERY new
   * keys (a sweep reads the whole shard), so chains stay short under churn.
   */
  #claim(shard: number, hash: number, keyLength: number, now: number, key: string): number {
    const i32 = this.#i32
    const used = (HEADER_BYTES + shard * SHARD_BYTES + 4) >> 2
    const claims = (HEADER_BYTES + shard * SHARD_BYTES + 16) >> 2
    if (this.#u8[this.#offsetOf(this.#free) + S_KIND] === EMPTY) {
      const full = i32[used] >= this.#shardSlots - 1
      if (
        (full || (i32[used] >= this.#sweepFrom && i32[claims] >= SWEEP_EVERY)) &&
        now >= this.#f64[(HEADER_BYTES + shard * SHARD_BYTES + 8) >> 3] &&
        this.#sweep(shard, now) > 0
      ) {
        this.#probe(shard, hash, keyLength, now)
      }
    }
    const at = this.#offsetOf(this.#free)
    if (this.#u8[at + S_KIND] === EMPTY) {
      if (i32[used] >= this.#shardSlots - 1) {
        throw new StoreError(
          'GH_STORE_FULL',
          `store: no room for "${key}": its shard holds ${i32[used]} live entries (table capacity ${this.capacity}); raise the store's capacity`,
        )
      }
      i32[used]++
      i32[claims]++
    }
    this.#u32[(at + S_HASH) >> 2] = hash
    this.#u16[(at + S_KEY_LENGTH) >> 1] = keyLength
    const keyStart = at + SLOT_HEADER_BYTES
    const keyBytes = this.#keyBytes
    for (let k = 0; k < keyLength; k++) this.#u8[keyStart + k] = keyBytes[k]
    return at
  }

  /**
   * Empties `slot` and shifts later entries of the chain back into the gap
   * (Knuth 6.4 Algorithm R), so every remaining key stays reachable from its
   * home slot without tombstones.
   */
  #removeAt(shard: number, slot: number): void {
    const u8 = this.#u8
    const slots = this.#shardSlots
    const first = shard * slots
    let hole = slot - first
    let j = hole
    for (;;) {
      j = j + 1 === slots ? 0 : j + 1
      const at = this.#offsetOf(first + j)
      if (u8[at + S_KIND] === EMPTY) break
      const home = this.#homeOf(this.#u32[(at + S_HASH) >> 2])
      // The entry at j may fill the hole only if its home is not cyclically within (hole, j].
      if (hole <= j ? home > hole && home <= j : home > hole || home <= j) continue
      u8.copyWithin(this.#offsetOf(first + hole), at, at + this.#slotBytes)
      hole = j
    }
    u8[this.#offsetOf(first + hole) + S_KIND] = EMPTY
    this.#i32[(HEADER_BYTES + shard * SHARD_BYTES + 4) >> 2]--
  }

  /** Removes every expired entry of the shard; answers how many. Resets the shard's nextSweepAt. */
  #sweep(shard: number, now: number): number {
    const u8 = this.#u8
    const f64 = this.#f64
    const slots = this.#shardSlots
    const first = shard * slots
    let removed = 0
    let next = Infinity
    // After a removal the slot is looked at again: backward shifting may have moved an entry into it.
    for (let i = 0; i < slots; ) {
      const at = this.#offsetOf(first + i)
      if (u8[at + S_KIND] !== EMPTY) {
        const expiresAt = f64[(at + S_EXPIRES) >> 3]
        if (expiresAt <= now) {
          this.#removeAt(shard, first + i)
          removed++
          continue
        }
        if (expiresAt < next) next = expiresAt
      }
      i++
    }
    f64[(HEADER_BYTES + shard * SHARD_BYTES + 8) >> 3] = next
    this.#i32[(HEADER_BYTES + shard * SHARD_BYTES + 16) >> 2] = 0
    return removed
  }

  // --- the shard lock ---------------------------------------------------------------------------

  #lock(shard: number): void {
    if (Atomics.compareExchange(this.#i32, (HEADER_BYTES + shard * SHARD_BYTES) >> 2, 0, this.#tag) !== 0) {
      this.#lockContended((HEADER_BYTES + shard * SHARD_BYTES) >> 2)
    }
  }

  #lockContended(index: number): void {
    const locks = this.#i32
    const mine = this.#tag
    for (let spin = 0; spin < SPINS; spin++) {
      if (Atomics.load(locks, index) === 0 && Atomics.compareExchange(locks, index, 0, mine) === 0) return
    }
    let deadline = 0
    for (;;) {
      const word = Atomics.load(locks, index)
      if (word === 0) {
        // Taken as "contended": other sleepers may remain, so our unlock must wake one.
        if (Atomics.compareExchange(locks, index, 0, mine | 1) === 0) return
        continue
      }
      if ((word & ~1) === mine) {
        throw new Error(
          'memory store: called from inside an operation on this thread holding the same lock (from `now`?)',
        )
      }
      if ((word & 1) === 0 && Atomics.compareExchange(locks, index, word, word | 1) !== word) continue
      const t = performance.now()
      if (deadline === 0) deadline = t + this.#lockTimeoutMs
      else if (t >= deadline) {
        throw new StoreError(
          'GH_STORE_LOCK_TIMEOUT',
          `store: a shard lock has been held by thread ${(word >>> 1) - 1} for over ${this.#lockTimeoutMs} ms (if that thread died, the supervisor calls releaseLocksHeldBy)`,
        )
      }
      Atomics.wait(locks, index, word | 1, deadline - t)
    }
  }

  #unlock(shard: number): void {
    const index = (HEADER_BYTES + shard * SHARD_BYTES) >> 2
    if ((Atomics.exchange(this.#i32, index, 0) & 1) !== 0) Atomics.notify(this.#i32, index, 1)
  }
}
