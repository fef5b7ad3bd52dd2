import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DURATION_PATTERN, parseDuration, parseSize, SIZE_PATTERN } from '../../src/config/units.ts'

describe('parseDuration', () => {
  it('reads each unit into milliseconds', () => {
    assert.equal(parseDuration('250ms'), 250)
    assert.equal(parseDuration('30s'), 30_000)
    assert.equal(parseDuration('5m'), 300_000)
    assert.equal(parseDuration('1h'), 3_600_000)
    assert.equal(parseDuration('0s'), 0)
  })

  it('takes fractions and rounds to whole milliseconds', () => {
    assert.equal(parseDuration('1.5m'), 90_000)
    assert.equal(parseDuration('0.25s'), 250)
    assert.equal(parseDuration('1.0004s'), 1000)
    assert.equal(parseDuration('0.5ms'), 1)
  })

  it('refuses what the schema refuses, with the reason', () => {
    for (const text of ['5 seconds', '10', 's', '1d', '-1s', '1.s', '.5s', '1S', ' 1s', '1s ', '1e3ms', ''])
      assert.throws(() => parseDuration(text), /invalid duration .*like 250ms, 30s, 5m/, text)
  })

  it('agrees with the schema pattern', () => {
    const pattern = new RegExp(DURATION_PATTERN)
    for (const text of ['250ms', '1.5m', '0s', '5 seconds', '10', '1d', '1.s'])
      assert.equal(pattern.test(text), !throws(() => parseDuration(text)), text)
  })
})

describe('parseSize', () => {
  it('reads each unit in powers of 1024', () => {
    assert.equal(parseSize('512b'), 512)
    assert.equal(parseSize('64kb'), 65_536)
    assert.equal(parseSize('1mb'), 1_048_576)
    assert.equal(parseSize('2gb'), 2 * 1024 ** 3)
    assert.equal(parseSize('0kb'), 0)
  })

  it('takes a plain number of bytes as is', () => {
    assert.equal(parseSize(0), 0)
    assert.equal(parseSize(1500), 1500)
  })

  it('refuses fractions, spaces, capitals and unknown units', () => {
    for (const text of ['1.5mb', '10 MB', '10MB', '1tb', 'kb', '-1kb', '1k', '1m'])
      assert.throws(() => parseSize(text), /invalid size .*like 64kb, 1mb/, text)
  })

  it('agrees with the schema pattern', () => {
    const pattern = new RegExp(SIZE_PATTERN)
    for (const text of ['64kb', '1mb', '1.5mb', '10 MB', '1k'])
      assert.equal(pattern.test(text), !throws(() => parseSize(text)), text)
  })
})

function throws(run: () => unknown): boolean {
  try {
    run()
    return false
  } catch {
    return true
  }
}
