/**
 * Circuit breakers over real sockets: a service whose only target answers
 * 503 opens its breaker after minRequests, clients then get 503
 * GH_CIRCUIT_OPEN with Retry-After while the target sees nothing, and once
 * the target is fixed the trial requests close the breaker; per target, one
 * bad target of two is cut off while the other serves. The breaker state is
 * read from Gateway.upstreamStates(), as the metrics and admin API will.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { createCleanup } from '../helpers/cleanup.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startUpstream } from '../helpers/upstream.ts'

interface Outcome {
  status: number
  /** The problem code of a Gatehouse reply; null for a target's own response. */
  code: string | null
  contentType: string | null
  retryAfter: string | null
  /** The answering target's name (its JSON body), if any. */
  name: string | null
}

async function send(url: string, method = 'GET', body?: string): Promise<Outcome> {
  const res = await request(url, { method, body })
  const text = await res.body.text()
  let parsed: { code?: string; name?: string } = {}
  try {
    parsed = JSON.parse(text)
  } catch {}
  const header = (name: string) => {
    const value = res.headers[name]
    return typeof value === 'string' ? value : null
  }
  return {
    status: res.statusCode,
    code: parsed.code ?? null,
    contentType: header('content-type'),
    retryAfter: header('retry-after'),
    name: parsed.name ?? null,
  }
}

function circuitOf(gw: TestGateway, service: string, url: string) {
  const target = gw.gateway.upstreamStates()[service]?.find((t) => t.url === url)
  assert.ok(target, `no state for ${url} in ${service}`)
  return { selectable: target.selectable, ...target.circuit! }
}

describe('circuit breaker', () => {
  const cleanup = createCleanup()
  after(() => cleanup.run())
  const track = cleanup.track

  it('opens on a failing service, answers 503 GH_CIRCUIT_OPEN with Retry-After, and closes after good trials', async () => {
    let status = 503
    const target = track(
      await startUpstream('only', (req, res) => {
        req.resume()
        res.writeHead(status, { 'content-type': 'application/json' }).end('{"name":"only"}')
      }),
    )
    const gw = track(
      await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services:
  svc:
    targets: [${target.url}]
    circuitBreaker: {failureRate: 50, window: 1m, minRequests: 5, openFor: 300ms, halfOpenRequests: 2}
routes: [{path: /, service: svc}]
`),
    )
    assert.deepEqual(circuitOf(gw, 'svc', target.url), {
      selectable: true,
      scope: 'service',
      state: 'closed',
      requests: 0,
      failures: 0,
      retryInMs: 0,
      trials: 0,
      trialSuccesses: 0,
    })

    // The target's own 503s until minRequests have failed; each client request is one attempt (one target).
    const before: Outcome[] = []
    while (circuitOf(gw, 'svc', target.url).state === 'closed' && before.length < 20)
      before.push(await send(gw.url()))
    assert.equal(before.length, 5)
    assert.ok(before.every((o) => o.status === 503 && o.code === null && o.name === 'only'))
    assert.equal(target.requests.length, 5)

    const open = circuitOf(gw, 'svc', target.url)
    assert.equal(open.state, 'open')
    assert.ok(open.retryInMs > 0 && open.retryInMs <= 300)

    // Open: answered by Gatehouse, as problem+json with Retry-After, and the target sees nothing.
    // (The breaker may turn half-open during this loop on a slow machine: stop at the first trial.)
    let refused = 0
    while (refused < 5) {
      const seen: number = target.requests.length
      const outcome = await send(gw.url())
      if (target.requests.length !== seen) break
      assert.equal(outcome.status, 503)
      assert.equal(outcome.code, 'GH_CIRCUIT_OPEN')
      assert.equal(outcome.contentType, 'application/problem+json')
      assert.equal(outcome.retryAfter, '1')
      refused++
    }
    assert.ok(refused >= 1, 'no request was refused while the breaker was open')

    // A request with a body takes the same path to the same problem (when the breaker is still open).
    if (circuitOf(gw, 'svc', target.url).state === 'open') {
      const seen = target.requests.length
      const post = await send(gw.url(), 'POST', 'x'.repeat(1000))
      assert.equal(post.code, 'GH_CIRCUIT_OPEN')
      assert.equal(target.requests.length, seen)
    }

    // Fixed: after openFor the trial requests go through, succeed, and close the breaker.
    status = 200
    await eventually(
      async () => {
        const outcome = await send(gw.url())
        assert.equal(outcome.status, 200)
        assert.equal(circuitOf(gw, 'svc', target.url).state, 'closed')
      },
      { timeout: 10_000, interval: 50 },
    )
    const flowing: Outcome[] = []
    for (let i = 0; i < 10; i++) flowing.push(await send(gw.url()))
    assert.ok(flowing.every((o) => o.status === 200 && o.name === 'only'))
    assert.equal(circuitOf(gw, 'svc', target.url).failures, 0)
  })

  it('opens again when a trial fails', async () => {
    const target = track(
      await startUpstream('down', (req, res) => {
        req.resume()
        res.writeHead(502).end()
      }),
    )
    const gw = track(
      await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services:
  svc:
    targets: [${target.url}]
    circuitBreaker: {minRequests: 3, openFor: 300ms, halfOpenRequests: 1}
routes: [{path: /, service: svc}]
`),
    )
    for (let i = 0; i < 3; i++) assert.equal((await send(gw.url())).status, 502)
    assert.equal(circuitOf(gw, 'svc', target.url).state, 'open')
    // The first request after openFor is the trial; it fails and the breaker opens again.
    const seen = target.requests.length
    await eventually(
      async () => {
        await send(gw.url())
        assert.ok(target.requests.length > seen)
      },
      { timeout: 10_000, interval: 50 },
    )
    assert.equal(target.requests.length, seen + 1)
    assert.equal(circuitOf(gw, 'svc', target.url).state, 'open')
    const outcome = await send(gw.url())
    assert.equal(outcome.code, 'GH_CIRCUIT_OPEN')
    assert.equal(target.requests.length, seen + 1)
  })

  it('per target: cuts off the bad target of two while the other serves', async (t) => {
    const bad = track(
      await startUpstream('bad', (req, res) => {
        req.resume()
        res.writeHead(503, { 'content-type': 'application/json' }).end('{"name":"bad"}')
      }),
    )
    const good = track(await startUpstream('good'))
    const gw = track(
      await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services:
  svc:
    targets: [${good.url}, ${bad.url}]
    circuitBreaker: {perTarget: true, minRequests: 4, openFor: 1m}
routes: [{path: /, service: svc}]
`),
    )
    const before: Outcome[] = []
    while (circuitOf(gw, 'svc', bad.url).state !== 'open' && before.length < 40)
      before.push(await send(gw.url()))
    const badState = circuitOf(gw, 'svc', bad.url)
    assert.equal(badState.scope, 'target')
    assert.equal(badState.state, 'open')
    assert.equal(badState.selectable, false)
    assert.equal(bad.requests.length, 4)
    const goodState = circuitOf(gw, 'svc', good.url)
    assert.deepEqual([goodState.scope, goodState.state, goodState.selectable], ['target', 'closed', true])

    const seen = bad.requests.length
    const afterwards: Outcome[] = []
    for (let i = 0; i < 20; i++) afterwards.push(await send(gw.url()))
    assert.ok(afterwards.every((o) => o.status === 200 && o.name === 'good'))
    assert.equal(bad.requests.length, seen)
    t.diagnostic(
      `before the bad target's breaker opened: ${before.filter((o) => o.status !== 200).length} of ${before.length} client requests saw its 503`,
    )
  })
})
