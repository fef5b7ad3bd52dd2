/**
 * The contract every balancer passes (STYLE.md habit 10). Stated tolerances,
 * as absolute differences of a target's share of the picks (weights 3:2:1
 * give shares 0.500, 0.333, 0.167):
 *
 * - round-robin, least-connections (idle): exact, every 6 picks are 3:2:1;
 * - random, ewma (idle: ties go by weighted draw): within 0.02 over 30,000
 *   picks (the standard deviation is under 0.003);
 * - ip-hash, consistent-hash: within 0.03 over 30,000 distinct keys (the
 *   ring's 256 points per unit of weight leave a few percent of imbalance;
 *   the figures are in docs/load-balancing.md).
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { Balancer } from '../balancer.ts'
import type { Target } from '../target.ts'
import { consistentHash } from './consistent-hash.ts'
import { ewma } from './ewma.ts'
import { ipHash } from './ip-hash.ts'
import { leastConnections } from './least-connections.ts'
import {
  anyRequest,
  closeTargets,
  expectedShares,
  KEY_HEADER,
  keyedRequest,
  makeTargets,
  remap,
  shares,
  tally,
} from './measure.ts'
import { random } from './random.ts'
import { roundRobin } from './round-robin.ts'

interface Subject {
  readonly name: string
  readonly make: (targets: readonly Target[], slowStartMs?: number) => Balancer
  /** Hash balancers are measured over distinct keys: one key always lands on one target. */
  readonly keyed: boolean
  /** Largest allowed difference between a target's share and its weight's share. */
  readonly tolerance: number
}

const subjects: readonly Subject[] = [
  { name: 'round-robin', make: roundRobin, keyed: false, tolerance: 0 },
  { name: 'least-connections', make: leastConnections, keyed: false, tolerance: 0 },
  { name: 'random', make: random, keyed: false, tolerance: 0.02 },
  { name: 'ewma', make: ewma, keyed: false, tolerance: 0.02 },
  { name: 'ip-hash', make: ipHash, keyed: true, tolerance: 0.03 },
  {
    name: 'consistent-hash',
    make: (targets, slowStartMs) =>
      consistentHash(targets, { from: 'header', name: KEY_HEADER }, slowStartMs),
    keyed: true,
    tolerance: 0.03,
  },
]

const HOUR = 3_600_000
const made = new Set<Target>()
function targets(weights: readonly number[], names?: readonly string[]): Target[] {
  const list = makeTargets(weights, names)
  for (const target of list) made.add(target)
  return list
}
after(() => closeTargets(made))

function assertShares(actual: Record<string, number>, expected: Record<string, number>, tolerance: number) {
  for (const [name, share] of Object.entries(expected)) {
    const got = actual[name] ?? 0
    assert.ok(
      Math.abs(got - share) <= tolerance + 1e-9,
      `${name}: share ${got.toFixed(4)}, expected ${share.toFixed(4)} ± ${tolerance} (${JSON.stringify(actual)})`,
    )
  }
}

for (const subject of subjects) {
  describe(`balancer contract: ${subject.name}`, () => {
    const picks = (balancer: Balancer, count: number, exclude?: ReadonlySet<Target>) =>
      tally(balancer, count, { keyed: subject.keyed, exclude })

    it('honours weights 3:2:1 over 30,000 picks (distinct keys for hash balancers)', () => {
      const list = targets([3, 2, 1])
      const counted = picks(subject.make(list), 30_000)
      assert.equal(counted.none, 0)
      assertShares(shares(counted, list), expectedShares(list), subject.tolerance)
    })

    it('never picks a target of weight 0', () => {
      const list = targets([0, 2, 0, 1])
      const counted = picks(subject.make(list), 3000)
      assert.deepEqual([...counted.counts.keys()].sort(), ['b', 'd'])
    })

    it('never picks a non-selectable target while a selectable one exists', () => {
      const list = targets([1, 1, 1, 1])
      const balancer = subject.make(list)
      list[1].state.selectable = false
      list[3].state.selectable = false
      const counted = picks(balancer, 3000)
      assert.equal(counted.none, 0)
      assert.deepEqual([...counted.counts.keys()].sort(), ['a', 'c'])
      // Back in: picked again, by the same balancer.
      list[1].state.selectable = true
      assert.ok((picks(balancer, 3000).counts.get('b') ?? 0) > 0)
    })

    it('returns null when no target is selectable, or there are none', () => {
      const list = targets([1, 2])
      const balancer = subject.make(list)
      for (const target of list) target.state.selectable = false
      assert.equal(picks(balancer, 50).none, 50)
      assert.equal(subject.make([]).pick(anyRequest), null)
      assert.equal(subject.make(targets([0, 0])).pick(anyRequest), null)
    })

    it('respects exclude (targets a retry already tried), and returns null when all are excluded', () => {
      const list = targets([3, 2, 1])
      const balancer = subject.make(list)
      const counted = picks(balancer, 3000, new Set([list[0]]))
      assert.equal(counted.none, 0)
      assert.equal(counted.counts.get('a'), undefined)
      assert.ok((counted.counts.get('b') ?? 0) > 0 && (counted.counts.get('c') ?? 0) > 0)
      list[2].state.selectable = false
      assert.deepEqual([...picks(balancer, 300, new Set([list[0]])).counts.keys()], ['b'])
      assert.equal(picks(balancer, 30, new Set([list[0], list[1]])).none, 30)
    })

    it('keeps working over a changed target list: added and removed targets', () => {
      const list = targets([1, 1, 1])
      const grown = [...list, ...targets([1], ['d'])]
      const shrunk = [list[0], list[2]]
      for (const changed of [grown, shrunk]) {
        const counted = picks(subject.make(changed), 12_000)
        assert.equal(counted.none, 0)
        assert.deepEqual([...counted.counts.keys()].sort(), changed.map((t) => t.poolKey).sort())
        assertShares(shares(counted, changed), expectedShares(changed), subject.tolerance + 0.02)
      }
      if (subject.keyed) {
        // A hash balancer keeps most keys: about 1/4 move when one of 4 is added, 1/3 when one of 3 goes.
        const before = { balancer: subject.make(list), targets: list }
        const added = remap(before, { balancer: subject.make(grown), targets: grown }, 10_000)
        const removed = remap(before, { balancer: subject.make(shrunk), targets: shrunk }, 10_000)
        assert.ok(added.moved / added.keys < 0.25 + 0.05, `added: ${added.moved} of ${added.keys} moved`)
        assert.ok(removed.moved / removed.keys < 1 / 3 + 0.05, `removed: ${removed.moved} moved`)
        assert.equal(added.movedNeedlessly, 0)
        assert.equal(removed.movedNeedlessly, 0)
      }
    })

    it('gives a target in slow start about 10% of its weight, and its full weight once ramped', () => {
      const list = targets([1, 1, 1])
      const balancer = subject.make(list, HOUR)
      list[2].state.upSince = performance.now()
      const ramping = shares(picks(balancer, 30_000), list).c
      // Weighted balancers reweigh to 0.1 : 2.1; a ring keeps 10% of the ramping target's keys (1/3 x 0.1).
      const expected = subject.keyed ? 0.1 / 3 : 0.1 / 2.1
      assert.ok(Math.abs(ramping - expected) < 0.02, `ramping share ${ramping}, expected about ${expected}`)
      list[2].state.upSince = performance.now() - HOUR / 2
      const halfway = shares(picks(balancer, 30_000), list).c
      const expectedHalfway = subject.keyed ? 0.55 / 3 : 0.55 / 2.55
      assert.ok(
        Math.abs(halfway - expectedHalfway) < 0.03,
        `halfway share ${halfway}, expected ${expectedHalfway}`,
      )
      list[2].state.upSince = performance.now() - 2 * HOUR
      assert.ok(Math.abs(shares(picks(balancer, 30_000), list).c - 1 / 3) < subject.tolerance + 0.01)
    })
  })
}

describe('balancer contract: hash balancers send one key to one target', () => {
  for (const subject of subjects.filter((s) => s.keyed)) {
    it(`${subject.name}: the same key, the same target; a down target's keys walk on and come back`, () => {
      const list = targets([1, 1, 1, 1])
      const balancer = subject.make(list)
      const owners = Array.from({ length: 2000 }, (_, i) => balancer.pick(keyedRequest(i)))
      for (let i = 0; i < 2000; i++) assert.equal(balancer.pick(keyedRequest(i)), owners[i])
      list[1].state.selectable = false
      for (let i = 0; i < 2000; i++) {
        const now = balancer.pick(keyedRequest(i))
        if (owners[i] === list[1]) assert.notEqual(now, list[1])
        else assert.equal(now, owners[i], 'a key whose target is up stays')
      }
      list[1].state.selectable = true
      for (let i = 0; i < 2000; i++) assert.equal(balancer.pick(keyedRequest(i)), owners[i])
    })
  }
})
