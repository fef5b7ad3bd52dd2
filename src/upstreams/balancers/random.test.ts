import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { Target } from '../target.ts'
import { anyRequest, closeTargets, makeTargets, tally } from './measure.ts'
import { random } from './random.ts'

describe('random with power of two choices', () => {
  const made: Target[] = []
  const targets = (...weights: number[]) => {
    const list = makeTargets(weights)
    made.push(...list)
    return list
  }
  after(() => closeTargets(made))

  it('never sends to the most loaded target while two others are idle (it always loses the comparison)', () => {
    const list = targets(1, 1, 1)
    list[0].state.inflight = 10
    const counted = tally(random(list), 3000)
    assert.equal(counted.counts.get('a'), undefined)
    assert.ok((counted.counts.get('b') ?? 0) > 1000 && (counted.counts.get('c') ?? 0) > 1000)
  })

  it('sends to the least loaded of two more often than one random choice would', () => {
    const list = targets(1, 1, 1, 1)
    list.forEach((target, i) => {
      target.state.inflight = i // a idle ... d busiest
    })
    const counted = tally(random(list), 12_000)
    // a wins every pair it is in: 3 of the 6 pairs, so half the picks (one random choice: a quarter).
    const a = (counted.counts.get('a') ?? 0) / 12_000
    assert.ok(Math.abs(a - 0.5) < 0.03, `a got ${a}`)
    assert.equal(counted.counts.get('d'), undefined)
  })

  it('with one candidate, picks it', () => {
    const list = targets(1, 1)
    list[1].state.selectable = false
    assert.equal(random(list).pick(anyRequest), list[0])
  })
})
