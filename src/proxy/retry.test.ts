import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { describe, it } from 'node:test'
import { backoffMs, keepBody, retryCondition } from './retry.ts'

function coded(code: string, message = 'x'): Error {
  return Object.assign(new Error(message), { code })
}

describe('retryCondition', () => {
  it('tells connect failures, resets and response timeouts apart', () => {
    assert.equal(retryCondition(coded('ECONNREFUSED')), 'connect-failure')
    assert.equal(retryCondition(coded('UPSTREAM_CONNECT_TIMEOUT')), 'connect-failure')
    assert.equal(retryCondition(coded('ECONNRESET')), 'reset')
    assert.equal(retryCondition(coded('UPSTREAM_CLOSED')), 'reset')
    assert.equal(retryCondition(coded('UPSTREAM_HEADERS_TIMEOUT')), 'timeout')
  })

  it('does not retry what another try would not fix', () => {
    assert.equal(retryCondition(coded('UPSTREAM_BAD_RESPONSE')), null)
    assert.equal(retryCondition(coded('UPSTREAM_BODY_TIMEOUT')), null)
    assert.equal(retryCondition(coded('UPSTREAM_BAD_REQUEST')), null)
    assert.equal(retryCondition(new Error('no code')), null)
    assert.equal(retryCondition(null), null)
  })
})

describe('backoffMs', () => {
  it('draws from [0, base x 2^(n-1)) capped at max (full jitter)', () => {
    const top = () => 0.999999
    assert.ok(backoffMs(1, 25, 250, top) < 25 && backoffMs(1, 25, 250, top) > 24.9)
    assert.ok(backoffMs(2, 25, 250, top) > 49.9 && backoffMs(2, 25, 250, top) < 50)
    assert.ok(backoffMs(10, 25, 250, top) < 250 && backoffMs(10, 25, 250, top) > 249.9)
    assert.equal(
      backoffMs(3, 25, 250, () => 0),
      0,
    )
  })
})

describe('keepBody', () => {
  it('keeps a body within the limit whole', async () => {
    const kept = await keepBody(Readable.from([Buffer.from('ab'), Buffer.from('cd')]), 4)
    assert.equal(kept.whole, true)
    assert.equal((kept.body as Buffer).toString(), 'abcd')
  })

  it('hands a body past the limit back as one stream, nothing lost', async () => {
    const parts = ['0123', '4567', '89']
    const kept = await keepBody(Readable.from(parts.map((p) => Buffer.from(p))), 5)
    assert.equal(kept.whole, false)
    const out: Buffer[] = []
    for await (const chunk of kept.body as AsyncIterable<Buffer>) out.push(chunk)
    assert.equal(Buffer.concat(out).toString(), '0123456789')
  })

  it('rejects with the source error', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from('a')
      throw new Error('too large')
    }
    await assert.rejects(keepBody(failing(), 100), /too large/)
  })
})
