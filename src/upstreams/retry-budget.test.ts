import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { RetryConfig } from '../config/types.ts'
import { RetryBudget } from './retry-budget.ts'
import type { Target } from './target.ts'

function config(percent: number, min: number): RetryConfig {
  return { budget: { percent, min } } as RetryConfig
}

/** Targets as the budget reads them: only their requests in flight. */
function targets(...inflight: number[]): Target[] {
  return inflight.map((n) => ({ state: { inflight: n } }) as unknown as Target)
}

describe('RetryBudget', () => {
  it('always allows the floor, even with nothing in flight', () => {
    const budget = new RetryBudget(config(20, 3))
    const none = targets(0, 0)
    assert.equal(budget.acquire(none), true)
    assert.equal(budget.acquire(none), true)
    assert.equal(budget.acquire(none), true)
    assert.equal(budget.acquire(none), false, 'the fourth concurrent retry is over the floor')
    budget.release()
    assert.equal(budget.acquire(none), true, 'a released retry frees its place')
  })

  it('allows a share of the requests in flight', () => {
    const budget = new RetryBudget(config(20, 0))
    // 50 plain requests in flight over three targets: 20% = 10 retries.
    const busy = targets(20, 20, 10)
    for (let i = 0; i < 10; i++) assert.equal(budget.acquire(busy), true, `retry ${i + 1}`)
    assert.equal(budget.acquire(busy), false, 'the eleventh is over 20%')
    assert.equal(budget.retrying, 10)
  })

  it('counts a request that may retry once, between its tries too', () => {
    const budget = new RetryBudget(config(50, 0))
    // 10 retriable requests: 6 in a try (counted by their targets too), 4 between tries.
    budget.requests = 10
    budget.tries = 6
    const busy = targets(4, 2, 4) // 6 of theirs + 4 plain requests
    assert.equal(budget.allowed(busy), 7, '50% of 14 requests')
  })

  it('percent 0 with min 0 allows no retry at all', () => {
    const budget = new RetryBudget(config(0, 0))
    assert.equal(budget.acquire(targets(100)), false)
    assert.equal(budget.retrying, 0)
  })
})
