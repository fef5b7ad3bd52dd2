import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { UpstreamPool } from './http1/pool.ts'
import { Selection } from './selection.ts'
import { Target } from './target.ts'

describe('selection: which targets may be picked', () => {
  const made: Target[] = []
  /** Targets named a, b, c...; `spec` is weight, or 'b' for a backup of weight 1. Their pools never connect. */
  function targets(...spec: (number | 'b')[]): Target[] {
    const list = spec.map((s, i) => {
      const origin = `http://127.0.0.1:${20_001 + made.length + i}`
      return new Target(
        { url: origin, origin, weight: s === 'b' ? 1 : s, backup: s === 'b', drain: false },
        new UpstreamPool({ origin }),
        String.fromCharCode(97 + i),
        null,
      )
    })
    made.push(...list)
    return list
  }
  const selectable = (list: Target[]) =>
    list
      .filter((t) => t.state.selectable)
      .map((t) => t.poolKey)
      .join('')

  after(async () => {
    await Promise.all(made.map((target) => target.pool.close()))
  })

  it('takes unhealthy, ejected, draining and weight-0 targets out', () => {
    const list = targets(1, 1, 1, 1, 1, 0)
    const selection = new Selection(list, { panicThreshold: 0 })
    list[0].state.healthy = false
    list[1].state.ejectedUntil = 1000
    list[2].state.draining = true
    selection.update(500)
    assert.equal(selectable(list), 'de')
    // The ejection runs out: refresh() notices without anything else changing.
    selection.refresh(999)
    assert.equal(selectable(list), 'de')
    selection.refresh(1000)
    assert.equal(selectable(list), 'bde')
  })

  it('serves backups only when every primary is down, and primaries again when one is back', () => {
    const list = targets(1, 1, 'b', 'b')
    const selection = new Selection(list, { panicThreshold: 50 })
    selection.update(0)
    assert.equal(selectable(list), 'ab')
    list[0].state.healthy = false
    selection.update(1)
    // One of two primaries up is not below 50%, and the backups stay out.
    assert.equal(selectable(list), 'b')
    list[1].state.healthy = false
    selection.update(2)
    assert.equal(selectable(list), 'cd')
    list[1].state.healthy = true
    selection.update(3)
    assert.equal(selectable(list), 'b')
  })

  it('panics below the threshold: every non-draining primary serves', () => {
    const list = targets(1, 1, 1, 1, 1)
    const selection = new Selection(list, { panicThreshold: 50 })
    list[0].state.healthy = false
    list[1].state.healthy = false
    selection.update(0)
    // 3 of 5 up (60%): no panic.
    assert.equal(selectable(list), 'cde')
    assert.equal(selection.panic, false)
    list[2].state.ejectedUntil = 100
    selection.update(1)
    // 2 of 5 (40%) is below 50%: all of them.
    assert.equal(selectable(list), 'abcde')
    assert.equal(selection.panic, true)
    // A draining target stays out even in panic, and is not counted: 2 of 4 up is not below 50%.
    list[0].state.draining = true
    selection.update(2)
    assert.equal(selectable(list), 'de')
    assert.equal(selection.panic, false)
  })

  it('never panics with threshold 0 or while a backup can serve', () => {
    const none = targets(1, 1)
    const off = new Selection(none, { panicThreshold: 0 })
    for (const t of none) t.state.healthy = false
    off.update(0)
    assert.equal(selectable(none), '')

    const withBackup = targets(1, 1, 1, 'b')
    const selection = new Selection(withBackup, { panicThreshold: 80 })
    withBackup[0].state.healthy = false
    selection.update(0)
    assert.equal(selectable(withBackup), 'bc')
    withBackup[3].state.healthy = false
    selection.update(1)
    assert.equal(selectable(withBackup), 'abc')
  })

  it('restarts slow start when a target serves again, not while it stays up', () => {
    const list = targets(1, 1, 1)
    const selection = new Selection(list, { panicThreshold: 50 })
    selection.update(0)
    const firstUp = list[0].state.upSince
    const steady = list[2].state.upSince
    selection.update(10)
    assert.equal(list[0].state.upSince, firstUp)
    list[0].state.healthy = false
    selection.update(20)
    list[0].state.healthy = true
    selection.update(30)
    assert.equal(list[0].state.upSince, 30)
    // Kept selectable by panic while down, it still ramps from the moment it is up.
    list[0].state.healthy = false
    list[1].state.healthy = false
    selection.update(40)
    assert.equal(selection.panic, true)
    assert.equal(list[0].state.selectable, true)
    list[0].state.healthy = true
    selection.update(50)
    assert.equal(list[0].state.upSince, 50)
    // A target that never stopped serving never ramps again.
    assert.equal(list[2].state.upSince, steady)
  })
})
