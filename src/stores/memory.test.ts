import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { storeContract } from './contract.ts'
import { MemoryStore } from './memory.ts'
import { StoreError } from './store.ts'

storeContract('MemoryStore (one thread)', (now) => MemoryStore.create({ capacity: 4096, now }))

storeContract('MemoryStore (two instances attached to one buffer, alternating)', (now) => {
  const a = MemoryStore.create({ capacity: 4096, now })
  const b = MemoryStore.attach(a.buffer, { now })
  let turn = 0
  // Every call goes to the other instance than the last: both must see one table.
  const pick = () => (turn++ % 2 === 0 ? a : b)
  return {
    increment: (key, by, ttlMs) => pick().increment(key, by, ttlMs),
    get: (key) => pick().get(key),
    set: (key, value, ttlMs) => pick().set(key, value, ttlMs),
    compareAndSet: (key, expected, value, ttlMs) => pick().compareAndSet(key, expected, value, ttlMs),
    delete: (key) => pick().delete(key),
    close: () => pick().close(),
  }
})

const T0 = 1_000_000

describe('MemoryStore', () => {
  it('answers synchronously: values, never promises', () => {
    const store = MemoryStore.create({ capacity: 16, now: () => T0 })
    assert.deepEqual(store.increment('n', 1, 10), { value: 1, expiresAt: T0 + 10 })
    assert.equal(store.compareAndSet('k', null, 'v', 10), true)
    assert.deepEqual(store.get('k'), { value: 'v', expiresAt: T0 + 10 })
    assert.equal(store.set('k', 'w', 10), undefined)
    assert.equal(store.delete('k'), true)
  })

  it('takes the memory docs/store.md states: 64 B + 64 B per shard + slots of 32 + key + value bytes', () => {
    // Defaults: 65,536 entries, 64 shards of 1,025 slots, 224-byte slots.
    assert.equal(MemoryStore.byteLengthFor(), 64 + 64 * 64 + 64 * 1025 * 224)
    assert.equal(MemoryStore.create().buffer.byteLength, MemoryStore.byteLengthFor())
    // Small tables are one shard; slots are rounded up to 8 bytes.
    assert.equal(
      MemoryStore.byteLengthFor({ capacity: 100, maxKeyBytes: 10, maxValueBytes: 1 }),
      64 + 64 + 101 * 48,
    )
  })

  it('refuses options out of range with RangeError', () => {
    for (const options of [
      { capacity: 0 },
      { capacity: 1.5 },
      { maxKeyBytes: 0 },
      { maxKeyBytes: 65_536 },
      { maxValueBytes: -1 },
      { capacity: 2 ** 24, maxValueBytes: 65_535 },
      { lockTimeoutMs: 0 },
    ]) {
      assert.throws(() => MemoryStore.create(options), RangeError, JSON.stringify(options))
    }
  })

  it('attach refuses a buffer that is not a table', () => {
    assert.throws(() => MemoryStore.attach(new SharedArrayBuffer(4096)), /not a MemoryStore table/)
    assert.throws(() => MemoryStore.attach(new SharedArrayBuffer(8)), TypeError)
    const store = MemoryStore.create({ capacity: 16 })
    const copy = new SharedArrayBuffer(store.buffer.byteLength + 8)
    new Uint8Array(copy).set(new Uint8Array(store.buffer))
    assert.throws(() => MemoryStore.attach(copy), /does not match the buffer/)
  })

  it('an attached instance reads the geometry from the buffer', () => {
    const store = MemoryStore.create({ capacity: 300, maxKeyBytes: 20, maxValueBytes: 30 })
    const seen = MemoryStore.attach(store.buffer)
    assert.equal(seen.capacity, 300)
    assert.equal(seen.maxKeyBytes, 20)
    assert.equal(seen.maxValueBytes, 30)
    store.set('shared', 'yes', 1000)
    assert.equal(seen.get('shared')?.value, 'yes')
  })

  describe('limits', () => {
    it('keys up to maxKeyBytes UTF-8 bytes; longer ones fail with GH_STORE_KEY_TOO_LONG', () => {
      const store = MemoryStore.create({ capacity: 16, maxKeyBytes: 8, now: () => T0 })
      for (const key of ['12345678', '123456é', '€€', ''])
        assert.equal(store.increment(key, 1, 10).value, 1, key)
      for (const key of ['123456789', '1234567é', '€€€', 'x'.repeat(10_000)]) {
        assert.throws(
          () => store.increment(key, 1, 10),
          (error: unknown) => {
            assert.ok(error instanceof StoreError)
            assert.equal(error.code, 'GH_STORE_KEY_TOO_LONG')
            assert.match(error.message, /longer than maxKeyBytes \(8\)/)
            return true
          },
        )
        assert.throws(() => store.get(key), { code: 'GH_STORE_KEY_TOO_LONG' })
        assert.throws(() => store.delete(key), { code: 'GH_STORE_KEY_TOO_LONG' })
      }
      assert.equal(store.occupancy(), 4)
    })

    it('values up to maxValueBytes UTF-8 bytes; longer ones fail with GH_STORE_VALUE_TOO_LONG and change nothing', () => {
      const store = MemoryStore.create({ capacity: 16, maxValueBytes: 4, now: () => T0 })
      store.set('k', 'abcd', 10)
      store.set('e', '€a', 10)
      assert.throws(() => store.set('k', 'abcde', 10), { code: 'GH_STORE_VALUE_TOO_LONG' })
      assert.throws(() => store.set('k', '€€', 10), { code: 'GH_STORE_VALUE_TOO_LONG' })
      assert.throws(() => store.compareAndSet('k', 'abcd', 'abcde', 10), { code: 'GH_STORE_VALUE_TOO_LONG' })
      assert.equal(store.get('k')?.value, 'abcd')
      assert.equal(store.get('e')?.value, '€a')
      // An expected value too long to be stored can never match; a counter's decimal form still can.
      assert.equal(store.compareAndSet('k', 'abcdef', 'x', 10), false)
      store.increment('n', 123_456, 10)
      assert.equal(store.compareAndSet('n', '123456', 'ok', 10), true)
    })

    it('when full, fails a new key with GH_STORE_FULL, keeps counting existing keys, and reclaims expired ones', () => {
      let now = T0
      const store = MemoryStore.create({ capacity: 8, now: () => now })
      for (let i = 0; i < 8; i++) store.increment(`k${i}`, 1, i < 4 ? 100 : 1000)
      assert.equal(store.occupancy(), 8)
      assert.throws(
        () => store.increment('new', 1, 100),
        (error: unknown) => {
          assert.ok(error instanceof StoreError)
          assert.equal(error.code, 'GH_STORE_FULL')
          assert.match(error.message, /no room for "new".*capacity 8/)
          return true
        },
      )
      assert.throws(() => store.set('new', 'v', 100), { code: 'GH_STORE_FULL' })
      assert.throws(() => store.compareAndSet('new', null, 'v', 100), { code: 'GH_STORE_FULL' })
      assert.equal(store.get('new'), null)
      assert.equal(store.compareAndSet('new', 'x', 'v', 100), false)
      for (let i = 0; i < 8; i++) assert.equal(store.increment(`k${i}`, 1, 100).value, 2)
      // Half of them expire: four new keys fit, a fifth does not.
      now += 100
      for (let i = 0; i < 4; i++) assert.equal(store.increment(`n${i}`, 1, 1000).value, 1)
      assert.throws(() => store.increment('n4', 1, 1000), { code: 'GH_STORE_FULL' })
      for (let i = 4; i < 8; i++) assert.equal(store.get(`k${i}`)?.value, '2')
      // A deletion frees a slot at once.
      assert.equal(store.delete('k4'), true)
      assert.equal(store.increment('n4', 1, 1000).value, 1)
      assert.equal(store.occupancy(), 8)
    })

    it('a table of many shards holds most of its capacity before one shard is full', () => {
      const store = MemoryStore.create({ capacity: 16_384, now: () => T0 })
      let stored = 0
      for (; stored < 16_384; stored++) {
        try {
          store.increment(`client-${stored}`, 1, 1000)
        } catch (error) {
          assert.equal((error as StoreError).code, 'GH_STORE_FULL')
          break
        }
      }
      // 16 shards of 1,025 slots: the first one fills at about 90-95 % of the table.
      assert.ok(stored > 0.8 * 16_384, `only ${stored} entries fitted`)
      for (let i = 0; i < stored; i++) assert.equal(store.get(`client-${i}`)?.value, '1')
    })
  })

  it('sweeps expired entries from a busy shard, so churn does not fill it', () => {
    let now = T0
    const store = MemoryStore.create({ capacity: 64, now: () => now })
    // 100 windows of 60 fresh keys each, never deleted: only expiry makes room.
    for (let window = 0; window < 100; window++) {
      for (let i = 0; i < 60; i++) assert.equal(store.increment(`w${window}:${i}`, 1, 1000).value, 1)
      now += 1000
    }
    assert.ok(store.occupancy() <= 64)
  })

  it('keeps a shard below about 75 % full of expired entries when live keys are few (short probe chains)', () => {
    let now = T0
    // Two shards of 1,025 slots; 300 live keys at a time, 120,000 keys in all.
    const store = MemoryStore.create({ capacity: 2048, now: () => now })
    for (let window = 0; window < 400; window++) {
      for (let i = 0; i < 300; i++) store.increment(`w${window}:${i}`, 1, 1000)
      now += 1000
    }
    assert.ok(store.occupancy() <= 2 * (Math.floor(1025 * 0.75) + 64), `occupancy ${store.occupancy()}`)
    assert.ok(store.occupancy() >= 300)
  })

  it('a call from inside its own clock fails instead of deadlocking or mixing up keys, and frees the lock', () => {
    let reenter: string | null = null
    const store: MemoryStore = MemoryStore.create({
      capacity: 16_384,
      now: () => {
        if (reenter !== null) store.get(reenter)
        return T0
      },
    })
    // The same key (the same shard lock), and keys in every other shard.
    for (const key of ['x', ...Array.from({ length: 64 }, (_, i) => `other-${i}`)]) {
      reenter = key
      assert.throws(() => store.increment('x', 1, 10), /inside its own clock/)
    }
    reenter = null
    assert.equal(store.increment('x', 1, 10).value, 1)
    assert.equal(store.get('other-1'), null)
    // Another instance on this thread, same table: the lock names this thread, so it refuses too.
    const other = MemoryStore.attach(store.buffer, { now: () => T0 })
    const nested = MemoryStore.attach(store.buffer, {
      now: () => {
        other.increment('x', 1, 10)
        return T0
      },
    })
    assert.throws(() => nested.increment('x', 1, 10), /holding the same lock/)
    assert.equal(other.increment('x', 1, 10).value, 2)
  })

  it('a clock that throws leaves the lock free', () => {
    let fail = true
    const store = MemoryStore.create({
      capacity: 16,
      lockTimeoutMs: 100,
      now: () => {
        if (fail) throw new Error('clock broke')
        return T0
      },
    })
    assert.throws(() => store.increment('x', 1, 10), /clock broke/)
    fail = false
    assert.equal(store.increment('x', 1, 10).value, 1)
  })

  it('agrees with a Map model over 30,000 random operations (collisions, deletions, expiry, full)', () => {
    for (const capacity of [24, 4096]) {
      let now = T0
      const store = MemoryStore.create({ capacity, maxValueBytes: 16, now: () => now })
      const model = new Map<string, { value: string; expiresAt: number }>()
      const live = (key: string) => {
        const entry = model.get(key)
        return entry !== undefined && entry.expiresAt > now ? entry : undefined
      }
      const liveCount = () => [...model.keys()].filter((key) => live(key) !== undefined).length
      let seed = 12345
      const random = (n: number) => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
        return (seed >>> 8) % n
      }
      // A one-shard table holds exactly `capacity` live keys; a sharded one is only checked when it accepts.
      const oneShard = capacity < 2048
      let fulls = 0
      for (let step = 0; step < 15_000; step++) {
        const key = `k${random(oneShard ? 40 : 400)}`
        const ttl = 1 + random(50)
        const op = random(10)
        if (op === 0) now += random(20)
        const entry = live(key)
        const label = `step ${step} op ${op} ${key}`
        const by = random(5) - 1
        const value = random(2) === 0 ? `s${random(1000)}` : String(random(100))
        const expected = random(3) === 0 ? null : (entry?.value ?? `s${random(1000)}`)
        // Operations that would add a key: only these may fail with GH_STORE_FULL, and must when the table is full.
        const adds = entry === undefined && (op <= 3 || op === 6 || (op === 7 && expected === null))
        const full = adds && oneShard && liveCount() >= capacity
        try {
          if (op <= 3) {
            const current = entry === undefined ? 0 : Number(entry.value)
            if (entry !== undefined && !/^-?\d+$/.test(entry.value)) {
              assert.throws(() => store.increment(key, by, ttl), { code: 'GH_STORE_NOT_A_COUNTER' }, label)
              continue
            }
            const result = store.increment(key, by, ttl)
            const expiresAt = entry?.expiresAt ?? now + ttl
            assert.deepEqual(result, { value: current + by, expiresAt }, label)
            model.set(key, { value: String(current + by), expiresAt })
          } else if (op <= 5) {
            const want = entry === undefined ? null : { value: entry.value, expiresAt: entry.expiresAt }
            assert.deepEqual(store.get(key), want, label)
          } else if (op === 6) {
            store.set(key, value, ttl)
            model.set(key, { value, expiresAt: now + ttl })
          } else if (op === 7) {
            const should = expected === null ? entry === undefined : entry?.value === expected
            assert.equal(store.compareAndSet(key, expected, value, ttl), should, label)
            if (should) model.set(key, { value, expiresAt: now + ttl })
          } else {
            assert.equal(store.delete(key), entry !== undefined, label)
            model.delete(key)
          }
          assert.ok(!full, `${label}: accepted a key beyond capacity`)
        } catch (error) {
          if (!(error instanceof StoreError) || error.code !== 'GH_STORE_FULL') throw error
          assert.ok(adds, `${label}: GH_STORE_FULL for an operation that adds nothing`)
          if (oneShard) assert.ok(full, `${label}: GH_STORE_FULL with ${liveCount()} live keys`)
          fulls++
        }
      }
      if (oneShard) assert.ok(fulls > 0, 'the model run never filled the table')
      assert.ok(store.occupancy() <= capacity)
    }
  })
})
