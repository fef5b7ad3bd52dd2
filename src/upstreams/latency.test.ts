import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { GatehouseError } from '../errors.ts'
import { closeTargets, makeTargets } from './balancers/measure.ts'
import { currentLatency, FAILURE_PENALTY_MS, LATENCY_DECAY_MS, recordLatency } from './latency.ts'
import { TargetState } from './target-state.ts'

describe('peak EWMA latency', () => {
  const targets = makeTargets([1, 1, 1])
  after(() => closeTargets(targets))
  const response = (latencyMs: number) => ({ kind: 'response', status: 200, latencyMs }) as const

  it('takes the first response as the estimate and jumps to a slower one at once', () => {
    const state = targets[0].state
    recordLatency(targets[0], response(20), 1000)
    assert.equal(state.latencyEwmaMs, 20)
    recordLatency(targets[0], response(300), 1001)
    assert.equal(state.latencyEwmaMs, 300)
  })

  it('blends a faster response in by the time since the last one', () => {
    const state = targets[1].state
    recordLatency(targets[1], response(100), 1000)
    recordLatency(targets[1], response(10), 1000 + LATENCY_DECAY_MS)
    // Weight exp(-1) on the old estimate.
    const expected = 100 * Math.exp(-1) + 10 * (1 - Math.exp(-1))
    assert.ok(Math.abs(state.latencyEwmaMs - expected) < 1e-9, String(state.latencyEwmaMs))
    recordLatency(targets[1], response(10), 1000 + LATENCY_DECAY_MS)
    assert.ok(Math.abs(state.latencyEwmaMs - expected) < 1e-9, 'no time passed: no weight')
  })

  it('counts a failure as at least the penalty latency', () => {
    const state = targets[2].state
    recordLatency(targets[2], response(5), 1000)
    const error = new GatehouseError('GH_UPSTREAM_UNREACHABLE', 'refused')
    recordLatency(targets[2], { kind: 'failure', error, latencyMs: 2 }, 1001)
    assert.equal(state.latencyEwmaMs, FAILURE_PENALTY_MS)
  })

  it('decays towards zero for readers while no response arrives', () => {
    const state = targets[0].state
    recordLatency(targets[0], response(400), 5000)
    assert.equal(currentLatency(state, 5000), 400)
    assert.ok(Math.abs(currentLatency(state, 5000 + LATENCY_DECAY_MS) - 400 * Math.exp(-1)) < 1e-9)
    assert.ok(currentLatency(state, 5000 + 10 * LATENCY_DECAY_MS) < 0.02)
    assert.equal(currentLatency(new TargetState(0), 5000), 0)
  })
})
