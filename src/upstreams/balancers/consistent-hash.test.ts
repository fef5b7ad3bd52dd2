import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { Target } from '../target.ts'
import { consistentHash } from './consistent-hash.ts'
import { closeTargets, KEY_HEADER, keyedRequest, makeTargets, remap } from './measure.ts'
import { HashRing, hashString, POINTS_PER_WEIGHT, RING_LIMIT } from './ring.ts'

const KEYS = 100_000
const made = new Set<Target>()
after(() => closeTargets(made))

function byHeader(targets: readonly Target[]) {
  return { balancer: consistentHash(targets, { from: 'header', name: KEY_HEADER }), targets }
}

describe('consistent hashing: keys moved by a change of one target, over 100,000 keys', () => {
  const six = makeTargets([1, 1, 1, 1, 1, 1])
  for (const target of six) made.add(target)
  const five = six.slice(0, 5)
  // Tolerance on the moved share: the ring's arcs are uneven by a few percent (256 points per target).
  const TOLERANCE = 0.03

  it('5 -> 6: about 1/6 of the keys move, all of them onto the new target', () => {
    const result = remap(byHeader(five), byHeader(six), KEYS)
    const share = result.moved / result.keys
    assert.ok(Math.abs(share - 1 / 6) <= TOLERANCE, `moved ${share}`)
    assert.equal(result.movedNeedlessly, 0)
    // Every key that moved went to the new target.
    const before = byHeader(five).balancer
    const now = byHeader(six).balancer
    for (let i = 0; i < 20_000; i++) {
      const request = keyedRequest(i)
      const is = now.pick(request)
      if (before.pick(request) !== is) assert.equal(is, six[5])
    }
  })

  it('6 -> 5: about 1/6 of the keys move, exactly those that were on the removed target', () => {
    const result = remap(byHeader(six), byHeader(five), KEYS)
    const share = result.moved / result.keys
    assert.ok(Math.abs(share - 1 / 6) <= TOLERANCE, `moved ${share}`)
    assert.equal(result.movedNeedlessly, 0)
    const before = byHeader(six).balancer
    let onRemoved = 0
    for (let i = 0; i < KEYS; i++) if (before.pick(keyedRequest(i)) === six[5]) onRemoved++
    assert.equal(result.moved, onRemoved)
  })

  it('removing a middle target of 6 moves only its keys, spread over the other five', () => {
    const without = [...six.slice(0, 2), ...six.slice(3)]
    const result = remap(byHeader(six), byHeader(without), KEYS)
    assert.ok(Math.abs(result.moved / KEYS - 1 / 6) <= TOLERANCE)
    assert.equal(result.movedNeedlessly, 0)
    const after = byHeader(without).balancer
    const heirs = new Set<Target | null>()
    const before = byHeader(six).balancer
    for (let i = 0; i < 20_000; i++)
      if (before.pick(keyedRequest(i)) === six[2]) heirs.add(after.pick(keyedRequest(i)))
    assert.equal(heirs.size, 5, 'the removed target’s keys spread over all that remain')
  })

  it('a target taken out of rotation (not selectable) moves only its own keys, and they come back', () => {
    const balancer = byHeader(six).balancer
    const owners = Array.from({ length: 20_000 }, (_, i) => balancer.pick(keyedRequest(i)))
    six[4].state.selectable = false
    let moved = 0
    for (let i = 0; i < owners.length; i++) {
      const is = balancer.pick(keyedRequest(i))
      if (is !== owners[i]) {
        moved++
        assert.equal(owners[i], six[4])
      }
    }
    six[4].state.selectable = true
    assert.ok(Math.abs(moved / owners.length - 1 / 6) <= TOLERANCE)
    for (let i = 0; i < owners.length; i++) assert.equal(balancer.pick(keyedRequest(i)), owners[i])
  })
})

describe('consistent hashing with slow start', () => {
  it('when every target ramps together (just after start), keys stay with their usual owners', () => {
    const list = makeTargets([1, 1, 1], ['s1', 's2', 's3'])
    for (const target of list) made.add(target)
    const plain = consistentHash(list, { from: 'header', name: KEY_HEADER })
    const ramping = consistentHash(list, { from: 'header', name: KEY_HEADER }, 3_600_000)
    const now = performance.now()
    for (const target of list) target.state.upSince = now
    for (let i = 0; i < 3000; i++) assert.equal(ramping.pick(keyedRequest(i)), plain.pick(keyedRequest(i)))
  })
})

describe('the ketama ring', () => {
  it('gives each target 256 points per unit of weight, and caps a heavy ring', () => {
    const light = makeTargets([1, 2, 3], ['x', 'y', 'z'])
    const heavy = makeTargets([1000, 1000], ['h', 'i'])
    for (const target of [...light, ...heavy]) made.add(target)
    assert.equal(new HashRing(light).size, 6 * POINTS_PER_WEIGHT)
    assert.equal(new HashRing(heavy).size, RING_LIMIT)
  })

  it('hashes strings to well-spread 32-bit values', () => {
    assert.equal(hashString('a'), hashString('a'))
    assert.notEqual(hashString('user-1'), hashString('user-2'))
    // Sequential keys fill 16 buckets of the 32-bit space evenly (each within 10% of 1/16).
    const buckets = new Array<number>(16).fill(0)
    for (let i = 0; i < 64_000; i++) buckets[hashString(`key-${i}`) >>> 28]++
    for (const count of buckets) assert.ok(Math.abs(count - 4000) < 400, `bucket ${count}`)
  })

  it('two targets with the same origin still share the keys', () => {
    const twins = makeTargets([1, 1], ['t', 't'])
    for (const target of twins) made.add(target)
    assert.equal(twins[0].origin, twins[1].origin)
    const balancer = byHeader(twins).balancer
    const seen = new Set<Target | null>()
    for (let i = 0; i < 1000; i++) seen.add(balancer.pick(keyedRequest(i)))
    assert.equal(seen.size, 2)
  })
})
