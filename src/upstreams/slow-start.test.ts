import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { closeTargets, makeTargets } from './balancers/measure.ts'
import { effectiveWeight } from './slow-start.ts'

describe('slow start weight', () => {
  const [target] = makeTargets([4])
  after(() => closeTargets([target]))

  it('ramps linearly from 10% to the full weight since the target came up', () => {
    target.state.upSince = 1000
    assert.equal(effectiveWeight(target, 1000, 10_000), 0.4)
    assert.equal(effectiveWeight(target, 500, 10_000), 0.4)
    assert.ok(Math.abs(effectiveWeight(target, 6000, 10_000) - 4 * 0.55) < 1e-9)
    assert.equal(effectiveWeight(target, 11_000, 10_000), 4)
    assert.equal(effectiveWeight(target, 50_000, 10_000), 4)
  })

  it('is the plain weight when slow start is off', () => {
    target.state.upSince = 1000
    assert.equal(effectiveWeight(target, 1000, 0), 4)
  })
})
