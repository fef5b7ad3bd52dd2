import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

describe('proxy basics', () => {
  let users1: Upstream
  let users2: Upstream
  let orders: Upstream
  let gw: TestGateway
  before(async () => {
    users1 = await startUpstream('users-1')
    users2 = await startUpstream('users-2')
    orders = await startUpstream('orders')
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
services:
  users-service:
    targets: [${users1.url}, ${users2.url}]
  orders-service:
    targets: [{url: ${orders.url}, weight: 3}]
routes:
  - path: /users
    service: users-service
  - path: /orders
    service: orders-service
    plugins: [security-headers]
`)
  })
  after(async () => {
    await gw.stop()
    await Promise.all([users1.close(), users2.close(), orders.close()])
  })

  it('forwards by path prefix and balances round robin over two targets', async () => {
    const names: string[] = []
    for (let i = 0; i < 4; i++) {
      const res = await request(`${gw.url()}/users/${i}?x=1`)
      assert.equal(res.statusCode, 200)
      const body = (await res.body.json()) as { name: string; url: string }
      assert.equal(body.url, `/users/${i}?x=1`)
      names.push(body.name)
    }
    assert.deepEqual(names.sort(), ['users-1', 'users-1', 'users-2', 'users-2'])
  })

  it('does not match a longer word on a segment prefix', async () => {
    const res = await request(`${gw.url()}/usersx`)
    assert.equal(res.statusCode, 404)
    assert.equal(res.headers['content-type'], 'application/problem+json')
    const problem = (await res.body.json()) as { code: string; requestId: string; status: number }
    assert.equal(problem.code, 'GH_ROUTE_NOT_FOUND')
    assert.equal(problem.status, 404)
    assert.equal(problem.requestId, res.headers['x-request-id'])
  })

  it('propagates an incoming request id and sets forwarding headers', async () => {
    const res = await request(`${gw.url()}/orders`, {
      headers: { 'x-request-id': 'abc-123', 'x-forwarded-for': '6.6.6.6' },
    })
    const body = (await res.body.json()) as { headers: Record<string, string> }
    assert.equal(res.headers['x-request-id'], 'abc-123')
    assert.equal(body.headers['x-request-id'], 'abc-123')
    // The peer is not a trusted proxy, so its X-Forwarded-For is replaced, not extended.
    assert.equal(body.headers['x-forwarded-for'], '127.0.0.1')
    assert.equal(body.headers['x-forwarded-proto'], 'http')
    assert.equal(body.headers.forwarded, `for=127.0.0.1;proto=http;host="127.0.0.1:${gw.port()}"`)
    assert.equal(body.headers.host, new URL(orders.url).host)
    assert.equal(res.headers['x-frame-options'], 'DENY')
  })
})
