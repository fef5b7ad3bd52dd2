import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { updateLatency } from '../latency.ts'
import type { Target } from '../target.ts'
import { ewma } from './ewma.ts'
import { closeTargets, makeTargets, tally } from './measure.ts'

describe('ewma (peak EWMA x load, power of two choices)', () => {
  const made: Target[] = []
  const targets = (...weights: number[]) => {
    const list = makeTargets(weights)
    made.push(...list)
    return list
  }
  after(() => closeTargets(made))
  /** Latencies as measured just now (so the readers' decay is negligible). */
  const measured = (list: readonly Target[], ...latencies: number[]) => {
    const now = performance.now()
    list.forEach((target, i) => {
      updateLatency(target.state, latencies[i], now)
    })
  }

  it('avoids a slow target', () => {
    const list = targets(1, 1, 1)
    measured(list, 200, 2, 3)
    const counted = tally(ewma(list), 3000)
    assert.equal(counted.counts.get('a'), undefined)
  })

  it('weighs latency by the requests in flight', () => {
    const list = targets(1, 1)
    measured(list, 50, 2)
    list[1].state.inflight = 40 // 2 ms x 41 = 82 > 50 ms x 1
    assert.equal(tally(ewma(list), 300).counts.get('a'), 300)
  })

  it('probes an unmeasured target once, then waits for its answer', () => {
    const list = targets(1, 1, 1)
    measured(list.slice(1), 5, 5)
    const balancer = ewma(list)
    // Unmeasured and idle costs 0: it gets picked.
    assert.ok((tally(balancer, 300).counts.get('a') ?? 0) > 0)
    // With a request in flight and still no answer it is penalised.
    list[0].state.inflight = 1
    assert.equal(tally(balancer, 3000).counts.get('a'), undefined)
  })

  it('tries a slow target again once its estimate has decayed', () => {
    const list = targets(1, 1)
    const now = performance.now()
    updateLatency(list[0].state, 200, now - 120_000) // 2 minutes ago: 200 x e^-12, under 0.01 ms
    updateLatency(list[1].state, 2, now)
    assert.ok((tally(ewma(list), 300).counts.get('a') ?? 0) > 0)
  })
})
