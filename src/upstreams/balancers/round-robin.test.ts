import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { RequestContext } from '../../pipeline/context.ts'
import { UpstreamPool } from '../http1/pool.ts'
import { Target } from '../target.ts'
import { roundRobin } from './round-robin.ts'

/** Round robin does not look at the request. */
const anyRequest = undefined as unknown as RequestContext

describe('smooth weighted round robin', () => {
  const made: Target[] = []
  /** Targets named a, b, c... with the given weights; their pools never connect. */
  function targets(...weights: number[]): Target[] {
    const list = weights.map((weight, i) => {
      const origin = `http://127.0.0.1:${10_001 + made.length + i}`
      return new Target(
        { url: origin, origin, weight, backup: false, drain: false },
        new UpstreamPool({ origin }),
        String.fromCharCode(97 + i),
      )
    })
    made.push(...list)
    return list
  }
  const nameOf = (target: Target | null) => (target === null ? null : target.poolKey)

  after(async () => {
    await Promise.all(made.map((target) => target.pool.close()))
  })

  it('spreads weights 5,1,1 as nginx does: a a b a c a a, then again', () => {
    const balancer = roundRobin(targets(5, 1, 1))
    const picks = Array.from({ length: 14 }, () => nameOf(balancer.pick(anyRequest)))
    assert.deepEqual(picks.join(' '), 'a a b a c a a a a b a c a a')
  })

  it('gives weights 3:1 exactly 3000 and 1000 of 4000 picks, never more than 3 in a row', () => {
    const balancer = roundRobin(targets(3, 1))
    const counts = { a: 0, b: 0 }
    let run = 0
    let longest = 0
    for (let i = 0; i < 4000; i++) {
      const name = nameOf(balancer.pick(anyRequest)) as 'a' | 'b'
      counts[name]++
      run = name === 'a' ? run + 1 : 0
      longest = Math.max(longest, run)
    }
    assert.deepEqual(counts, { a: 3000, b: 1000 })
    assert.equal(longest, 3)
  })

  it('alternates equal weights', () => {
    const balancer = roundRobin(targets(1, 1, 1))
    const picks = Array.from({ length: 6 }, () => nameOf(balancer.pick(anyRequest)))
    assert.deepEqual(picks, ['a', 'b', 'c', 'a', 'b', 'c'])
  })

  it('never picks a target of weight 0', () => {
    const balancer = roundRobin(targets(0, 2, 0, 1))
    const seen = new Set<string | null>()
    for (let i = 0; i < 300; i++) seen.add(nameOf(balancer.pick(anyRequest)))
    assert.deepEqual([...seen].sort(), ['b', 'd'])
  })

  it('returns null when nothing can take the request', () => {
    assert.equal(roundRobin(targets(0, 0)).pick(anyRequest), null)
    assert.equal(roundRobin([]).pick(anyRequest), null)
  })
})
