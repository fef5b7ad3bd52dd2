import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { ok, refused, status500, status503 } from '../../test/helpers/outcomes.ts'
import { ConfigError, loadConfigText } from '../config/index.ts'
import type { CircuitBreakerConfig } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import { builtinPlugins } from '../plugins/index.ts'
import { CircuitBreaker, ServiceCircuit } from './breaker.ts'
import { UpstreamPool } from './http1/pool.ts'
import { Selection } from './selection.ts'
import type { AttemptOutcome } from './service.ts'
import { Target } from './target.ts'

const config: CircuitBreakerConfig = {
  failureRate: 50,
  windowMs: 1000,
  minRequests: 4,
  openForMs: 300,
  halfOpenRequests: 2,
  statuses: [502, 503, 504],
  perTarget: false,
}

const local: AttemptOutcome = {
  kind: 'failure',
  error: new GatehouseError('GH_INTERNAL', 'a plugin'),
  latencyMs: 1,
}

/** Sends one request through the breaker at `now` and records how it went; false when refused. */
function attempt(breaker: CircuitBreaker, now: number, failed: boolean): boolean {
  if (!breaker.canAdmit(now)) return false
  breaker.admitted(null, now)
  breaker.record(null, failed, now)
  return true
}

describe('circuit breaker state machine', () => {
  it('stays closed below minRequests, even when everything fails', () => {
    const breaker = new CircuitBreaker(config)
    for (let i = 0; i < 3; i++) assert.equal(attempt(breaker, i, true), true)
    assert.equal(breaker.state, 'closed')
    attempt(breaker, 3, true)
    assert.equal(breaker.state, 'open')
  })

  it('opens when the failure share reaches failureRate, not below it', () => {
    const breaker = new CircuitBreaker(config)
    // 2 failures of 5 = 40% < 50%
    for (const failed of [false, false, false, true, true]) attempt(breaker, 10, failed)
    assert.equal(breaker.state, 'closed')
    // 3 of 6 = 50%
    attempt(breaker, 10, true)
    assert.equal(breaker.state, 'open')
    assert.deepEqual(
      { state: breaker.describe('service', 10).state, retryInMs: breaker.describe('service', 10).retryInMs },
      { state: 'open', retryInMs: 300 },
    )
  })

  it('forgets outcomes that slid out of the rolling window', () => {
    const breaker = new CircuitBreaker(config)
    for (let i = 0; i < 3; i++) attempt(breaker, 0, true)
    assert.equal(breaker.describe('service', 500).failures, 3)
    // 1.1 s later the first three are out of the 1 s window: one failure of one is below minRequests.
    attempt(breaker, 1100, true)
    assert.equal(breaker.state, 'closed')
    assert.deepEqual(
      [breaker.describe('service', 1100).requests, breaker.describe('service', 1100).failures],
      [1, 1],
    )
    // Within one window the count holds across buckets.
    for (const t of [1200, 1500, 1900]) attempt(breaker, t, true)
    assert.equal(breaker.state, 'open')
  })

  it('refuses while open, then lets halfOpenRequests trials through at once', () => {
    const breaker = new CircuitBreaker(config)
    for (let i = 0; i < 4; i++) attempt(breaker, 0, true)
    assert.equal(breaker.canAdmit(299), false)
    assert.equal(breaker.retryInMs(100), 200)
    assert.equal(breaker.canAdmit(300), true)
    assert.equal(breaker.state, 'half-open')
    breaker.admitted(null, 300)
    assert.equal(breaker.canAdmit(301), true)
    breaker.admitted(null, 301)
    // Both slots taken: the third waits.
    assert.equal(breaker.canAdmit(302), false)
    assert.equal(breaker.describe('service', 302).trials, 2)
    // A success frees a slot without closing yet (2 successes needed).
    breaker.record(null, false, 310)
    assert.equal(breaker.state, 'half-open')
    assert.equal(breaker.canAdmit(311), true)
  })

  it('closes with an empty window when every trial succeeds', () => {
    const breaker = new CircuitBreaker(config)
    for (let i = 0; i < 4; i++) attempt(breaker, 0, true)
    assert.equal(attempt(breaker, 300, false), true)
    assert.equal(breaker.state, 'half-open')
    assert.equal(attempt(breaker, 301, false), true)
    assert.equal(breaker.state, 'closed')
    assert.equal(breaker.describe('service', 301).requests, 0)
    // The failures that opened it are forgotten: three more failures are below minRequests.
    for (let i = 0; i < 3; i++) attempt(breaker, 302, true)
    assert.equal(breaker.state, 'closed')
  })

  it('opens again on the first failed trial, for another openFor', () => {
    const breaker = new CircuitBreaker(config)
    for (let i = 0; i < 4; i++) attempt(breaker, 0, true)
    assert.equal(attempt(breaker, 300, false), true)
    assert.equal(attempt(breaker, 305, true), true)
    assert.equal(breaker.state, 'open')
    assert.equal(breaker.canAdmit(604), false)
    assert.equal(breaker.canAdmit(605), true)
    // The success before the failure does not count towards closing after the new half-open.
    assert.equal(attempt(breaker, 606, false), true)
    assert.equal(breaker.state, 'half-open')
  })

  it('frees the slot of a trial that never reports after openFor', () => {
    const breaker = new CircuitBreaker(config)
    for (let i = 0; i < 4; i++) attempt(breaker, 0, true)
    // Two trials whose clients went away: no outcome ever comes.
    for (const t of [300, 310]) {
      assert.equal(breaker.canAdmit(t), true)
      breaker.admitted(null, t)
    }
    assert.equal(breaker.canAdmit(599), false)
    assert.equal(breaker.retryInMs(500), 0)
    assert.equal(breaker.canAdmit(600), true)
    breaker.admitted(null, 600)
    assert.equal(breaker.canAdmit(601), false)
    assert.equal(breaker.canAdmit(610), true)
  })

  it('ignores outcomes of requests sent before it opened, and outcomes that are nobody’s fault', () => {
    const breaker = new CircuitBreaker(config)
    for (let i = 0; i < 4; i++) attempt(breaker, 0, true)
    // Late answers while open neither extend nor end the open time.
    breaker.record(null, false, 100)
    breaker.record(null, true, 200)
    assert.equal(breaker.openUntil, 300)
    assert.equal(breaker.canAdmit(300), true)
    // Half-open: an outcome with no trial in flight is not a trial.
    breaker.record(null, true, 301)
    assert.equal(breaker.state, 'half-open')
    // Closed: a non-target outcome is not counted.
    const closed = new CircuitBreaker(config)
    for (let i = 0; i < 10; i++) closed.record(null, null, 0)
    assert.equal(closed.describe('service', 0).requests, 0)
  })
})

describe('circuit breakers of a service', () => {
  const made: Target[] = []
  function targets(count: number): Target[] {
    const list = Array.from({ length: count }, (_, i) => {
      const origin = `http://127.0.0.1:${31_001 + made.length + i}`
      return new Target(
        { url: origin, origin, weight: 1, backup: false, drain: false },
        new UpstreamPool({ origin }),
        origin,
      )
    })
    made.push(...list)
    return list
  }
  /** A round-robin pick over selectable targets not excluded. */
  function roundRobin(list: Target[]) {
    let next = 0
    return (exclude: ReadonlySet<Target> | undefined): Target | null => {
      for (let i = 0; i < list.length; i++) {
        const target = list[(next + i) % list.length]
        if (target.state.selectable && !exclude?.has(target)) {
          next = (next + i + 1) % list.length
          return target
        }
      }
      return null
    }
  }
  function refusal(fn: () => unknown): GatehouseError {
    try {
      fn()
    } catch (error) {
      assert.ok(error instanceof GatehouseError)
      return error
    }
    assert.fail('expected GH_CIRCUIT_OPEN')
  }

  after(async () => {
    await Promise.all(made.map((target) => target.pool.close()))
  })

  it('counts the configured statuses and target failures, not other statuses or local errors', () => {
    const list = targets(1)
    const selection = new Selection(list, { panicThreshold: 0 })
    const circuit = new ServiceCircuit({ name: 'svc', circuitBreaker: config }, list, selection)
    const pick = roundRobin(list)
    for (const outcome of [status500, local, status500, local, ok, status503, refused]) {
      circuit.report(circuit.choose(0, undefined, pick)!, outcome, 0)
    }
    // Counted: 500 (success), 500, ok, 503 (failure), refused (failure) = 2 of 5 failures.
    const view = circuit.describe(list[0], 0)
    assert.deepEqual([view?.scope, view?.state, view?.requests, view?.failures], ['service', 'closed', 5, 2])
    circuit.report(circuit.choose(0, undefined, pick)!, status503, 0)
    assert.equal(circuit.describe(list[0], 0)?.state, 'open')
  })

  it('service-wide: refuses with GH_CIRCUIT_OPEN and Retry-After (seconds, rounded up) without picking', () => {
    const list = targets(2)
    const selection = new Selection(list, { panicThreshold: 0 })
    const circuit = new ServiceCircuit(
      { name: 'svc', circuitBreaker: { ...config, openForMs: 2500 } },
      list,
      selection,
    )
    const pick = roundRobin(list)
    for (let i = 0; i < 4; i++) circuit.report(circuit.choose(0, undefined, pick)!, status503, 0)
    let picks = 0
    const counting = (exclude: ReadonlySet<Target> | undefined) => {
      picks++
      return pick(exclude)
    }
    const error = refusal(() => circuit.choose(1, undefined, counting))
    assert.equal(error.code, 'GH_CIRCUIT_OPEN')
    assert.equal(error.status, 503)
    assert.deepEqual(error.headers, { 'retry-after': '3' })
    assert.equal(picks, 0)
    assert.equal(circuit.describeService(1)?.state, 'open')
  })

  it('service-wide: trials are matched to their target; a trial lost to a client abort frees its slot', () => {
    const list = targets(2)
    const selection = new Selection(list, { panicThreshold: 0 })
    const circuit = new ServiceCircuit({ name: 'svc', circuitBreaker: config }, list, selection)
    const pick = roundRobin(list)
    for (let i = 0; i < 4; i++) circuit.report(circuit.choose(0, undefined, pick)!, refused, 0)
    const first = circuit.choose(300, undefined, pick)!
    const second = circuit.choose(300, undefined, pick)!
    assert.notEqual(first, second)
    assert.equal(refusal(() => circuit.choose(301, undefined, pick)).headers?.['retry-after'], '1')
    // first never reports (its client went away); second succeeds.
    circuit.report(second, ok, 320)
    const third = circuit.choose(321, undefined, pick)!
    circuit.report(third, ok, 330)
    assert.equal(circuit.describeService(330)?.state, 'closed')
    // The late outcome of the lost trial counts once, in the new window, like any other.
    circuit.report(first, status503, 340)
    assert.equal(circuit.describeService(340)?.failures, 1)
  })

  it('per target: an open target leaves the selection while the other serves; half-open lets trials in', () => {
    const list = targets(2)
    const [good, bad] = list
    // Panic at 100% would put every primary back; an open breaker must stay out anyway.
    const selection = new Selection(list, { panicThreshold: 100 })
    const circuit = new ServiceCircuit(
      { name: 'svc', circuitBreaker: { ...config, perTarget: true, halfOpenRequests: 1 } },
      list,
      selection,
    )
    selection.update(0)
    const pick = roundRobin(list)
    for (let i = 0; i < 8; i++) {
      const target = circuit.choose(0, undefined, pick)!
      circuit.report(target, target === bad ? status503 : ok, 0)
    }
    assert.equal(circuit.describe(bad, 0)?.state, 'open')
    assert.equal(circuit.describe(good, 0)?.state, 'closed')
    assert.equal(bad.state.selectable, false)
    assert.equal(good.state.selectable, true)
    for (let i = 0; i < 5; i++) assert.equal(circuit.choose(10, undefined, pick), good)
    // A retry that only the open target could take gets null (the client keeps the failure it had).
    assert.equal(circuit.choose(10, new Set([good]), pick), null)

    // After openFor the target is selectable again for one trial at a time.
    const seen = new Set<Target>()
    for (let i = 0; i < 4; i++) seen.add(circuit.choose(300, undefined, pick)!)
    assert.equal(circuit.describe(bad, 300)?.state, 'half-open')
    assert.equal(circuit.describe(bad, 300)?.trials, 1)
    assert.deepEqual(seen, new Set([good, bad]))
    circuit.report(bad, ok, 310)
    assert.equal(circuit.describe(bad, 310)?.state, 'closed')
    assert.equal(bad.state.selectable, true)
  })

  it('per target: a first attempt with every target open is refused with the wait until the first half-opens', () => {
    const list = targets(2)
    const selection = new Selection(list, { panicThreshold: 50 })
    const circuit = new ServiceCircuit(
      { name: 'svc', circuitBreaker: { ...config, perTarget: true, openForMs: 1500 } },
      list,
      selection,
    )
    selection.update(0)
    const pick = roundRobin(list)
    for (let i = 0; i < 8; i++) circuit.report(circuit.choose(i * 100, undefined, pick)!, refused, i * 100)
    assert.deepEqual(
      list.map((t) => t.state.selectable),
      [false, false],
    )
    // The first opened at 600 (half-open at 2100), the second at 700: from 1000, 1.1 s -> 2 s.
    const error = refusal(() => circuit.choose(1000, undefined, pick))
    assert.equal(error.code, 'GH_CIRCUIT_OPEN')
    assert.equal(error.headers?.['retry-after'], '2')
    assert.match(error.message, /svc/)
  })

  it('service-wide: a retry through an open breaker gets null, not a throw', () => {
    const list = targets(2)
    const selection = new Selection(list, { panicThreshold: 0 })
    const circuit = new ServiceCircuit({ name: 'svc', circuitBreaker: config }, list, selection)
    const pick = roundRobin(list)
    for (let i = 0; i < 4; i++) circuit.report(circuit.choose(0, undefined, pick)!, status503, 0)
    assert.equal(circuit.choose(1, new Set([list[0]]), pick), null)
  })

  it('per target: no target at all (not a breaker) is a plain null', () => {
    const list = targets(1)
    const selection = new Selection(list, { panicThreshold: 0 })
    const circuit = new ServiceCircuit(
      { name: 'svc', circuitBreaker: { ...config, perTarget: true } },
      list,
      selection,
    )
    list[0].state.healthy = false
    selection.update(0)
    assert.equal(
      circuit.choose(0, undefined, () => null),
      null,
    )
  })

  it('a reload with the same config keeps the breakers; a changed config starts closed', () => {
    const list = targets(1)
    const selection = new Selection(list, { panicThreshold: 0 })
    const service = { name: 'svc', circuitBreaker: config }
    const circuit = new ServiceCircuit(service, list, selection)
    const pick = roundRobin(list)
    for (let i = 0; i < 4; i++) circuit.report(circuit.choose(0, undefined, pick)!, status503, 0)
    const kept = new ServiceCircuit({ name: 'svc', circuitBreaker: { ...config } }, list, selection, circuit)
    assert.equal(kept.describeService(1)?.state, 'open')
    const fresh = new ServiceCircuit(
      { name: 'svc', circuitBreaker: { ...config, minRequests: 5 } },
      list,
      selection,
      circuit,
    )
    assert.equal(fresh.describeService(1)?.state, 'closed')
  })
})

describe('circuitBreaker config', () => {
  const load = (breaker: string) =>
    loadConfigText(
      't.yaml',
      `listeners: [{port: 0}]\nservices:\n  svc:\n    targets: [http://127.0.0.1:1]\n    ${breaker}\nroutes: [{path: /, service: svc}]\n`,
      { plugins: builtinPlugins(), env: {} },
    )

  it('is off without the key and takes the defaults with {}', () => {
    assert.equal(load('slowStart: 0s').services.svc.circuitBreaker, null)
    assert.deepEqual(load('circuitBreaker: {}').services.svc.circuitBreaker, {
      failureRate: 50,
      windowMs: 10_000,
      minRequests: 20,
      openForMs: 30_000,
      halfOpenRequests: 3,
      statuses: [502, 503, 504],
      perTarget: false,
    })
  })

  it('takes every setting', () => {
    const yaml =
      'circuitBreaker: {failureRate: 25, window: 30s, minRequests: 5, openFor: 300ms, halfOpenRequests: 1, statuses: [500], perTarget: true}'
    assert.deepEqual(load(yaml).services.svc.circuitBreaker, {
      failureRate: 25,
      windowMs: 30_000,
      minRequests: 5,
      openForMs: 300,
      halfOpenRequests: 1,
      statuses: [500],
      perTarget: true,
    })
  })

  it('refuses a zero window or open time, a rate above 100 and unknown keys', () => {
    const problems = (yaml: string) => {
      try {
        load(yaml)
      } catch (error) {
        assert.ok(error instanceof ConfigError)
        return error.problems.map((p) => p.message).join('\n')
      }
      assert.fail('expected a ConfigError')
    }
    assert.match(problems('circuitBreaker: {window: 0s}'), /window must be at least 10ms/)
    assert.match(problems('circuitBreaker: {openFor: 0s}'), /openFor must be longer than 0s/)
    assert.match(problems('circuitBreaker: {failureRate: 101}'), /100/)
    assert.match(problems('circuitBreaker: {failurerate: 50}'), /failureRate/)
  })
})
