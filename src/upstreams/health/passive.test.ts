import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { ok, refused, status500, status503, timedOut } from '../../../test/helpers/outcomes.ts'
import type { PassiveHealthConfig, ServiceConfig } from '../../config/types.ts'
import { GatehouseError } from '../../errors.ts'
import { UpstreamPool } from '../http1/pool.ts'
import { Selection } from '../selection.ts'
import type { AttemptOutcome } from '../service.ts'
import { Target } from '../target.ts'
import { passiveObservers } from './passive.ts'

const passive: PassiveHealthConfig = {
  failures: 3,
  windowMs: 1000,
  statuses: [500, 503],
  ejectionTimeMs: 100,
  maxEjectionTimeMs: 350,
  maxEjectedPercent: 50,
}

describe('passive health checks (outlier ejection)', () => {
  const made: Target[] = []
  function setup(count: number, config: Partial<PassiveHealthConfig> = {}) {
    const targets = Array.from({ length: count }, (_, i) => {
      const origin = `http://127.0.0.1:${30_001 + made.length + i}`
      return new Target(
        { url: origin, origin, weight: 1, backup: false, drain: false },
        new UpstreamPool({ origin }),
        origin,
      )
    })
    made.push(...targets)
    const service = {
      name: 'svc',
      healthCheck: { active: null, passive: { ...passive, ...config } },
      panicThreshold: 0,
    } as unknown as ServiceConfig
    const selection = new Selection(targets, service)
    selection.update(0)
    const [observe] = passiveObservers(service, targets, selection)
    return { targets, selection, observe }
  }

  after(async () => {
    await Promise.all(made.map((target) => target.pool.close()))
  })

  it('is off without config', () => {
    const service = { healthCheck: { active: null, passive: null } } as unknown as ServiceConfig
    assert.deepEqual(passiveObservers(service, [], new Selection([], { panicThreshold: 0 })), [])
  })

  it('ejects after `failures` within the window, not when they are spread wider', () => {
    const { targets, observe } = setup(2)
    const [a] = targets
    observe(a, refused, 0)
    observe(a, timedOut, 600)
    // The first failure has left the window by now: still two.
    observe(a, status500, 1100)
    assert.equal(a.state.selectable, true)
    observe(a, status503, 1200)
    assert.equal(a.state.ejectedUntil, 1300)
    assert.equal(a.state.selectable, false)
    assert.equal(a.state.describe(1200).ejected, true)
  })

  it('counts only the configured statuses and target failures, and successes do not clear the window', () => {
    const { targets, observe } = setup(2)
    const [a] = targets
    const notFound: AttemptOutcome = { kind: 'response', status: 404, latencyMs: 1 }
    const gatewayTimeout: AttemptOutcome = { kind: 'response', status: 504, latencyMs: 1 }
    const internal: AttemptOutcome = {
      kind: 'failure',
      error: new GatehouseError('GH_INTERNAL', 'a plugin threw'),
      latencyMs: 1,
    }
    for (const outcome of [notFound, gatewayTimeout, internal, ok]) observe(a, outcome, 10)
    assert.equal(a.state.recentFailures.length, 0)
    observe(a, status500, 20)
    observe(a, ok, 30)
    observe(a, status500, 40)
    observe(a, status500, 50)
    assert.equal(a.state.ejectedUntil, 150)
  })

  it('returns half-open: one failure ejects again for twice as long, up to the cap; a success closes it', () => {
    const { targets, selection, observe } = setup(2)
    const [a] = targets
    for (const t of [0, 1, 2]) observe(a, refused, t)
    assert.equal(a.state.ejectedUntil, 102)
    // Failures of requests sent before the ejection do not extend it.
    observe(a, refused, 50)
    assert.equal(a.state.ejectedUntil, 102)
    selection.refresh(102)
    assert.equal(a.state.selectable, true)
    observe(a, refused, 103)
    assert.equal(a.state.ejectedUntil, 103 + 200)
    observe(a, refused, 303)
    // 400 is capped at maxEjectionTime.
    assert.equal(a.state.ejectedUntil, 303 + 350)
    assert.equal(a.state.ejections, 3)
    observe(a, ok, 700)
    assert.equal(a.state.ejections, 0)
    // Closed again: one failure is not enough any more, and the next ejection is short.
    observe(a, refused, 710)
    assert.equal(a.state.ejectedUntil, 653)
    observe(a, refused, 720)
    observe(a, refused, 730)
    assert.equal(a.state.ejectedUntil, 830)
  })

  it('ejects at most maxEjectedPercent of the targets at once, and at least one', () => {
    const { targets, observe } = setup(4, { maxEjectedPercent: 50 })
    for (const target of targets) for (const t of [0, 1, 2]) observe(target, refused, t)
    assert.deepEqual(
      targets.map((t) => t.state.ejectedUntil > 2),
      [true, true, false, false],
    )
    // The window stays bounded while the cap refuses.
    assert.equal(targets[2].state.recentFailures.length, 2)
    // When the ejections run out, another target may go.
    observe(targets[2], refused, 102)
    assert.equal(targets[2].state.ejectedUntil, 202)

    const one = setup(3, { maxEjectedPercent: 10 })
    for (const target of one.targets) for (const t of [0, 1, 2]) one.observe(target, refused, t)
    assert.equal(one.targets.filter((t) => t.state.ejectedUntil > 2).length, 1)
  })
})
