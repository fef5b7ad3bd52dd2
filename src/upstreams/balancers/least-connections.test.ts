import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { Target } from '../target.ts'
import { leastConnections } from './least-connections.ts'
import { anyRequest, closeTargets, makeTargets } from './measure.ts'

describe('weighted least connections', () => {
  const made: Target[] = []
  const targets = (...weights: number[]) => {
    const list = makeTargets(weights)
    made.push(...list)
    return list
  }
  after(() => closeTargets(made))
  const name = (target: Target | null) => target?.poolKey ?? null

  it('picks the target with the fewest requests in flight', () => {
    const [a, b, c] = targets(1, 1, 1)
    const balancer = leastConnections([a, b, c])
    a.state.inflight = 3
    b.state.inflight = 1
    c.state.inflight = 2
    assert.equal(name(balancer.pick(anyRequest)), 'b')
    b.state.inflight = 5
    assert.equal(name(balancer.pick(anyRequest)), 'c')
  })

  it('compares requests in flight per unit of weight', () => {
    const [a, b] = targets(2, 1)
    const balancer = leastConnections([a, b])
    a.state.inflight = 3 // 1.5 per unit
    b.state.inflight = 1 // 1 per unit
    assert.equal(name(balancer.pick(anyRequest)), 'b')
    a.state.inflight = 1 // 0.5 per unit
    assert.equal(name(balancer.pick(anyRequest)), 'a')
  })

  it('breaks ties by weighted round robin', () => {
    const [a, b, c] = targets(1, 1, 1)
    const balancer = leastConnections([a, b, c])
    for (const t of [a, b, c]) t.state.inflight = 2
    const picks = Array.from({ length: 6 }, () => name(balancer.pick(anyRequest)))
    assert.deepEqual(picks, ['a', 'b', 'c', 'a', 'b', 'c'])
    // Tied at 2 per unit: a (4 in flight, weight 2) and b (2, weight 1) take turns 2:1; c is busier.
    const [d, e, f] = targets(2, 1, 1)
    d.state.inflight = 4
    e.state.inflight = 2
    f.state.inflight = 3
    const weighted = leastConnections([d, e, f])
    const turns = Array.from({ length: 6 }, () => name(weighted.pick(anyRequest)))
    assert.deepEqual(turns, ['a', 'b', 'a', 'a', 'b', 'a'])
  })

  it('under load that it tracks itself, keeps the busy counts level', () => {
    const [a, b, c] = targets(1, 1, 1)
    const balancer = leastConnections([a, b, c])
    // Requests that never finish on a: the others absorb every later pick.
    a.state.inflight = 10
    for (let i = 0; i < 20; i++) balancer.pick(anyRequest)!.state.inflight++
    assert.deepEqual([a.state.inflight, b.state.inflight, c.state.inflight], [10, 10, 10])
  })
})
