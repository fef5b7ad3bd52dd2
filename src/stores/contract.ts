/**
 * The contract every Store passes (memory on one thread, memory seen from
 * several threads, Redis later): the suite is a function taking a factory,
 * as Hono runs one suite over every router. Every call is awaited, so a
 * store that answers synchronously and one that answers with promises run
 * the same assertions. Time is driven through the clock the factory gets:
 * nothing here sleeps.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Store } from './store.ts'

/** Builds a fresh, empty store on the given clock (epoch ms). */
export type StoreFactory = (now: () => number) => Store | Promise<Store>

const START = Date.UTC(2026, 10, 23, 12, 0, 0)
const MINUTE = 60_000

/** Runs the contract suite under `describe(label)`. */
export function storeContract(label: string, factory: StoreFactory): void {
  describe(label, () => {
    /** A store with its clock; `advance` moves time forward. */
    async function fresh() {
      const clock = { time: START }
      const store = await factory(() => clock.time)
      return {
        store,
        clock,
        advance(ms: number) {
          clock.time += ms
        },
      }
    }

    describe('increment', () => {
      it('starts an absent counter at `by`, expiring ttlMs from now', async () => {
        const { store } = await fresh()
        assert.deepEqual(await store.increment('hits', 1, MINUTE), { value: 1, expiresAt: START + MINUTE })
        assert.deepEqual(await store.increment('other', 5, 1000), { value: 5, expiresAt: START + 1000 })
      })

      it('adds to a live counter and keeps its expiry (fixed window)', async () => {
        const { store, advance } = await fresh()
        await store.increment('hits', 1, MINUTE)
        advance(30_000)
        assert.deepEqual(await store.increment('hits', 2, MINUTE), { value: 3, expiresAt: START + MINUTE })
        advance(29_999)
        assert.deepEqual(await store.increment('hits', -1, 5), { value: 2, expiresAt: START + MINUTE })
      })

      it('starts a new window once the counter expired (expiresAt itself is expired)', async () => {
        const { store, advance } = await fresh()
        await store.increment('hits', 7, MINUTE)
        advance(MINUTE)
        assert.deepEqual(await store.increment('hits', 1, MINUTE), {
          value: 1,
          expiresAt: START + 2 * MINUTE,
        })
      })

      it('counts exactly: 1,000 increments give 1,000', async () => {
        const { store } = await fresh()
        let last = 0
        for (let i = 0; i < 1000; i++) last = (await store.increment('n', 1, MINUTE)).value
        assert.equal(last, 1000)
        assert.deepEqual(await store.get('n'), { value: '1000', expiresAt: START + MINUTE })
      })

      it('continues from a string holding a decimal integer, keeping its expiry', async () => {
        const { store } = await fresh()
        await store.set('n', '41', 1000)
        assert.deepEqual(await store.increment('n', 1, MINUTE), { value: 42, expiresAt: START + 1000 })
        await store.set('m', '-3', 1000)
        assert.equal((await store.increment('m', 1, MINUTE)).value, -2)
      })

      it('refuses a string that is not an integer with GH_STORE_NOT_A_COUNTER and leaves it', async () => {
        const { store } = await fresh()
        for (const value of ['abc', '1.5', '', ' 1', '1e3', '0x10']) {
          await store.set('s', value, MINUTE)
          await assert.rejects(async () => store.increment('s', 1, MINUTE), {
            code: 'GH_STORE_NOT_A_COUNTER',
          })
          assert.deepEqual(await store.get('s'), { value, expiresAt: START + MINUTE })
        }
      })

      it('refuses to pass 2^53 - 1 with GH_STORE_OVERFLOW', async () => {
        const { store } = await fresh()
        await store.increment('big', Number.MAX_SAFE_INTEGER - 1, MINUTE)
        assert.equal((await store.increment('big', 1, MINUTE)).value, Number.MAX_SAFE_INTEGER)
        await assert.rejects(async () => store.increment('big', 1, MINUTE), { code: 'GH_STORE_OVERFLOW' })
        assert.equal((await store.get('big'))?.value, String(Number.MAX_SAFE_INTEGER))
      })

      it('refuses a non-integer `by` and a ttlMs that is not > 0 with RangeError', async () => {
        const { store } = await fresh()
        for (const by of [1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
          await assert.rejects(async () => store.increment('k', by, MINUTE), RangeError)
        }
        for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
          await assert.rejects(async () => store.increment('k', 1, ttl), RangeError)
          await assert.rejects(async () => store.set('k', 'v', ttl), RangeError)
          await assert.rejects(async () => store.compareAndSet('k', null, 'v', ttl), RangeError)
        }
        assert.equal(await store.get('k'), null)
      })
    })

    describe('get and set', () => {
      it('answers null for a key never set', async () => {
        const { store } = await fresh()
        assert.equal(await store.get('nothing'), null)
      })

      it('round-trips strings (empty, UTF-8) with their expiry', async () => {
        const { store } = await fresh()
        for (const value of ['', 'v', 'héllo wörld', '🦀 crab', '{"tokens":9.5,"at":1764000000000}']) {
          await store.set('k', value, 1000)
          assert.deepEqual(await store.get('k'), { value, expiresAt: START + 1000 })
        }
      })

      it('replaces the value and the expiry', async () => {
        const { store, advance } = await fresh()
        await store.set('k', 'one', 1000)
        advance(500)
        await store.set('k', 'two', 1000)
        advance(900)
        assert.deepEqual(await store.get('k'), { value: 'two', expiresAt: START + 1500 })
      })

      it('is live while now < expiresAt, and gone at expiresAt', async () => {
        const { store, advance } = await fresh()
        await store.set('k', 'v', 1000)
        advance(999)
        assert.equal((await store.get('k'))?.value, 'v')
        advance(1)
        assert.equal(await store.get('k'), null)
      })

      it('shares one keyspace: a counter reads as its decimal string, set replaces a counter', async () => {
        const { store } = await fresh()
        await store.increment('k', 12, MINUTE)
        assert.deepEqual(await store.get('k'), { value: '12', expiresAt: START + MINUTE })
        await store.set('k', 'text', 1000)
        assert.deepEqual(await store.get('k'), { value: 'text', expiresAt: START + 1000 })
      })

      it('keeps keys apart that differ by one byte, by case, by normalization or by a NUL', async () => {
        const { store } = await fresh()
        const keys = [
          'a',
          'A',
          'a\u0000',
          'ab',
          'b',
          'é',
          'e\u0301',
          '',
          'rl:route:10.0.0.1',
          'rl:route:10.0.0.2',
        ]
        for (const [i, key] of keys.entries()) await store.set(key, `v${i}`, MINUTE)
        for (const [i, key] of keys.entries()) assert.equal((await store.get(key))?.value, `v${i}`, key)
      })

      it('holds many keys at once', async () => {
        const { store } = await fresh()
        for (let i = 0; i < 500; i++) await store.increment(`key-${i}`, i, MINUTE)
        for (let i = 0; i < 500; i++) assert.equal((await store.get(`key-${i}`))?.value, String(i))
      })
    })

    describe('compareAndSet', () => {
      it('with expected null, stores only when absent or expired', async () => {
        const { store, advance } = await fresh()
        assert.equal(await store.compareAndSet('k', null, 'first', 1000), true)
        assert.equal(await store.compareAndSet('k', null, 'second', 1000), false)
        assert.deepEqual(await store.get('k'), { value: 'first', expiresAt: START + 1000 })
        advance(1000)
        assert.equal(await store.compareAndSet('k', null, 'third', 1000), true)
        assert.deepEqual(await store.get('k'), { value: 'third', expiresAt: START + 2000 })
      })

      it('stores when the live value equals expected, with the new expiry', async () => {
        const { store, advance } = await fresh()
        await store.set('k', 'a', 1000)
        advance(10)
        assert.equal(await store.compareAndSet('k', 'a', 'b', 5000), true)
        assert.deepEqual(await store.get('k'), { value: 'b', expiresAt: START + 5010 })
      })

      it('leaves the entry when the value differs, is absent or expired', async () => {
        const { store, advance } = await fresh()
        await store.set('k', 'a', 1000)
        assert.equal(await store.compareAndSet('k', 'A', 'b', 1000), false)
        assert.equal(await store.compareAndSet('k', 'a ', 'b', 1000), false)
        assert.equal(await store.compareAndSet('k', '', 'b', 1000), false)
        assert.equal(await store.compareAndSet('absent', 'a', 'b', 1000), false)
        assert.equal(await store.get('absent'), null)
        assert.deepEqual(await store.get('k'), { value: 'a', expiresAt: START + 1000 })
        advance(1000)
        assert.equal(await store.compareAndSet('k', 'a', 'b', 1000), false)
        assert.equal(await store.get('k'), null)
      })

      it('compares a counter by its decimal string, and the result counts on', async () => {
        const { store } = await fresh()
        await store.increment('n', 5, MINUTE)
        assert.equal(await store.compareAndSet('n', '4', '9', MINUTE), false)
        assert.equal(await store.compareAndSet('n', '5', '6', MINUTE), true)
        assert.equal((await store.increment('n', 1, 1)).value, 7)
      })

      it('compares UTF-8 strings exactly', async () => {
        const { store } = await fresh()
        await store.set('k', 'é', 1000)
        assert.equal(await store.compareAndSet('k', 'e\u0301', 'x', 1000), false)
        assert.equal(await store.compareAndSet('k', 'é', '🦀', 1000), true)
        assert.equal(await store.compareAndSet('k', '🦀', 'y', 1000), true)
        assert.equal((await store.get('k'))?.value, 'y')
      })

      it('counts exactly through get -> compareAndSet loops', async () => {
        const { store } = await fresh()
        for (let i = 0; i < 200; i++) {
          const current = await store.get('n')
          const next = String((current === null ? 0 : Number(current.value)) + 1)
          assert.equal(await store.compareAndSet('n', current?.value ?? null, next, MINUTE), true)
        }
        assert.equal((await store.get('n'))?.value, '200')
      })
    })

    describe('delete', () => {
      it('removes a live entry and answers true; false when absent or expired', async () => {
        const { store, advance } = await fresh()
        await store.set('k', 'v', 1000)
        await store.increment('n', 1, 2000)
        assert.equal(await store.delete('k'), true)
        assert.equal(await store.get('k'), null)
        assert.equal(await store.delete('k'), false)
        assert.equal(await store.delete('never'), false)
        advance(2000)
        assert.equal(await store.delete('n'), false)
      })

      it('lets a deleted counter start again, and leaves other keys', async () => {
        const { store } = await fresh()
        for (let i = 0; i < 100; i++) await store.increment(`k${i}`, 3, MINUTE)
        for (let i = 0; i < 100; i += 2) assert.equal(await store.delete(`k${i}`), true)
        for (let i = 0; i < 100; i++) {
          assert.deepEqual(await store.increment(`k${i}`, 1, MINUTE), {
            value: i % 2 === 0 ? 1 : 4,
            expiresAt: START + MINUTE,
          })
        }
      })
    })

    it('limits: 100 per window admits exactly 100, then 100 again in the next window', async () => {
      const { store, advance } = await fresh()
      const admitted = async () => {
        let count = 0
        for (let i = 0; i < 250; i++) if ((await store.increment('limit', 1, MINUTE)).value <= 100) count++
        return count
      }
      assert.equal(await admitted(), 100)
      advance(MINUTE)
      assert.equal(await admitted(), 100)
    })

    it('closes', async () => {
      const { store } = await fresh()
      await store.close()
    })
  })
}
