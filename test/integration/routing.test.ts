/**
 * Routing through a real gateway: what the target receives (path, query,
 * Host) after stripPrefix / rewrite / preserveHost / hostRewrite, the local
 * terminals (redirect, respond), 404 / 405 problems, and path normalization.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { send } from '../helpers/http.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

interface Echo {
  name: string
  method: string
  url: string
  headers: Record<string, string>
}

describe('routing through the gateway', () => {
  let echo: Upstream
  let admin: Upstream
  let gw: TestGateway

  /** The request as the target saw it. */
  async function forwarded(path: string, options?: Parameters<typeof send>[2]): Promise<Echo> {
    const reply = await send(gw.port(), path, options)
    assert.equal(reply.status, 200, `${path}: ${reply.body}`)
    return JSON.parse(reply.body) as Echo
  }

  before(async () => {
    echo = await startUpstream('echo')
    admin = await startUpstream('admin')
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
services:
  echo:
    targets: [${echo.url}]
  admin:
    targets: [${admin.url}]
routes:
  - path: /strip
    stripPrefix: true
    service: echo
  - path: /tenants/:tenant
    stripPrefix: true
    service: echo
  - path: /api/v1
    rewrite: /v2
    service: echo
  - path: /users/:id/profile
    pathMatch: exact
    rewrite: /profiles/:id
    service: echo
  - path: ^/old/(\\d+)
    pathMatch: regex
    rewrite: /new/$1
    service: echo
  - path: /preserve
    preserveHost: true
    service: echo
  - path: /host-rewrite
    hostRewrite: backend.internal
    service: echo
  - path: /default-host
    service: echo
  - path: /go/:id
    pathMatch: exact
    redirect: {to: /items/:id, status: 301}
  - path: ^/docs/(?<page>[a-z]+)$
    pathMatch: regex
    redirect: {to: "https://docs.example.com/$1?from=:page"}
  - path: /teapot
    respond: {status: 418, headers: {X-Tea: earl-grey}, body: short and stout}
  - path: /status
    respond: {body: {ok: true, version: 2}}
  - path: /items
    methods: [GET]
    service: echo
  - path: /items
    methods: [POST, PUT]
    service: echo
  - path: /admin
    service: admin
  - path: /public
    service: echo
`)
  })
  after(async () => {
    await gw.stop()
    await Promise.all([echo.close(), admin.close()])
  })

  describe('stripPrefix and rewrite', () => {
    it('strips the matched prefix and keeps the rest and the query', async () => {
      assert.equal((await forwarded('/strip/a/b?x=1&y=2')).url, '/a/b?x=1&y=2')
      assert.equal((await forwarded('/strip')).url, '/')
      assert.equal((await forwarded('/strip?q')).url, '/?q')
      assert.equal((await forwarded('/tenants/acme/orders/7')).url, '/orders/7')
    })

    it('rewrites the matched prefix only at the start, never a later match', async () => {
      assert.equal((await forwarded('/api/v1/users?page=2')).url, '/v2/users?page=2')
      assert.equal((await forwarded('/api/v1')).url, '/v2')
      assert.equal((await forwarded('/api/v1/x/api/v1/y')).url, '/v2/x/api/v1/y')
      assert.equal((await send(gw.port(), '/api/v1x')).status, 404)
    })

    it('fills params into the rewrite', async () => {
      assert.equal((await forwarded('/users/42/profile?full=1')).url, '/profiles/42?full=1')
    })

    it('expands regex groups, keeping the unmatched rest and the query', async () => {
      assert.equal((await forwarded('/old/7/x?y=1')).url, '/new/7/x?y=1')
      assert.equal((await forwarded('/old/123')).url, '/new/123')
    })
  })

  describe('Host sent upstream', () => {
    it("sends the target's host:port by default", async () => {
      const seen = await forwarded('/default-host', { headers: { host: 'app.example.com' } })
      assert.equal(seen.headers.host, `127.0.0.1:${echo.port}`)
      assert.equal(seen.headers['x-forwarded-host'], 'app.example.com')
    })

    it("sends the client's Host with preserveHost", async () => {
      const seen = await forwarded('/preserve', { headers: { host: 'app.example.com:8443' } })
      assert.equal(seen.headers.host, 'app.example.com:8443')
    })

    it('sends the configured Host with hostRewrite', async () => {
      const seen = await forwarded('/host-rewrite', { headers: { host: 'app.example.com' } })
      assert.equal(seen.headers.host, 'backend.internal')
    })
  })

  describe('local terminals', () => {
    it('redirects with the status and params in Location, keeping the query', async () => {
      const reply = await send(gw.port(), '/go/5')
      assert.equal(reply.status, 301)
      assert.equal(reply.headers.location, '/items/5')
      assert.equal(reply.body, '')
      assert.match(String(reply.headers['x-request-id']), /^[0-9a-f-]{36}$/)
      assert.equal((await send(gw.port(), '/go/5?a=1&b=2')).headers.location, '/items/5?a=1&b=2')
      assert.equal((await send(gw.port(), '/go/5/x')).status, 404)
    })

    it('redirects with regex groups ($1, named as :param), 302 by default, its own query winning', async () => {
      const reply = await send(gw.port(), '/docs/intro?ignored=1')
      assert.equal(reply.status, 302)
      assert.equal(reply.headers.location, 'https://docs.example.com/intro?from=intro')
    })

    it('responds with a fixed status, headers and text body', async () => {
      const reply = await send(gw.port(), '/teapot')
      assert.equal(reply.status, 418)
      assert.equal(reply.headers['x-tea'], 'earl-grey')
      assert.equal(reply.headers['content-type'], 'text/plain; charset=utf-8')
      assert.equal(reply.headers['content-length'], String('short and stout'.length))
      assert.equal(reply.body, 'short and stout')
      assert.ok(reply.headers['x-request-id'])
    })

    it('responds with a JSON body as application/json, and without a body to HEAD', async () => {
      const reply = await send(gw.port(), '/status')
      assert.equal(reply.status, 200)
      assert.equal(reply.headers['content-type'], 'application/json')
      assert.deepEqual(JSON.parse(reply.body), { ok: true, version: 2 })
      const head = await send(gw.port(), '/status', { method: 'HEAD' })
      assert.equal(head.status, 200)
      assert.equal(head.body, '')
    })
  })

  describe('404 and 405', () => {
    it('answers 404 problem+json when no route matches', async () => {
      const reply = await send(gw.port(), '/nowhere/at/all')
      assert.equal(reply.status, 404)
      assert.equal(reply.headers['content-type'], 'application/problem+json')
      const problem = JSON.parse(reply.body)
      assert.equal(problem.code, 'GH_ROUTE_NOT_FOUND')
      assert.equal(problem.type, 'urn:gatehouse:problem:route-not-found')
      assert.equal(problem.requestId, reply.headers['x-request-id'])
    })

    it('answers 405 problem+json with Allow listing every method the path takes', async () => {
      const reply = await send(gw.port(), '/items/1', { method: 'DELETE' })
      assert.equal(reply.status, 405)
      assert.equal(reply.headers['content-type'], 'application/problem+json')
      assert.equal(reply.headers.allow, 'GET, HEAD, POST, PUT')
      const problem = JSON.parse(reply.body)
      assert.equal(problem.code, 'GH_METHOD_NOT_ALLOWED')
      assert.equal(problem.status, 405)
    })

    it('routes each method to its route, and HEAD to the GET route', async () => {
      assert.equal((await forwarded('/items', { method: 'PUT' })).method, 'PUT')
      assert.equal((await send(gw.port(), '/items', { method: 'HEAD' })).status, 200)
      assert.equal(echo.requests.at(-1)?.method, 'HEAD')
    })
  })

  describe('path normalization', () => {
    it('routes and forwards /public/../admin as /admin', async () => {
      const seen = await forwarded('/public/../admin?x=1')
      assert.equal(seen.name, 'admin')
      assert.equal(seen.url, '/admin?x=1')
    })

    it('treats %2e%2e as .. in any case', async () => {
      for (const path of ['/public/%2e%2e/admin', '/public/%2E%2E/admin/x', '/public/.%2e/admin']) {
        const seen = await forwarded(path)
        assert.equal(seen.name, 'admin', path)
        assert.match(seen.url, /^\/admin(\/x)?$/, path)
      }
    })

    it('decodes escaped unreserved characters: /%61dmin is /admin', async () => {
      const seen = await forwarded('/%61dmin/%7Euser')
      assert.equal(seen.name, 'admin')
      assert.equal(seen.url, '/admin/~user')
    })

    it('merges repeated slashes: //admin is /admin', async () => {
      const seen = await forwarded('//admin//panel')
      assert.equal(seen.name, 'admin')
      assert.equal(seen.url, '/admin/panel')
    })

    it('keeps an escaped slash escaped, as part of its segment', async () => {
      const seen = await forwarded('/public/..%2fadmin')
      assert.equal(seen.name, 'echo')
      assert.equal(seen.url, '/public/..%2Fadmin')
    })

    it('accepts the absolute form, whose authority replaces Host (RFC 9112 §3.2.2)', async () => {
      const seen = await forwarded(`http://Example.COM:${gw.port()}/public/../admin?x=1`, {
        headers: { host: 'ignored.test' },
      })
      assert.equal(seen.name, 'admin')
      assert.equal(seen.url, '/admin?x=1')
    })

    it('refuses the asterisk form with 400 problem+json', async () => {
      const reply = await send(gw.port(), '*', { method: 'OPTIONS' })
      assert.equal(reply.status, 400)
      assert.equal((JSON.parse(reply.body) as { code: string }).code, 'GH_BAD_REQUEST')
    })

    it('never climbs above the root', async () => {
      const seen = await forwarded('/../../admin')
      assert.equal(seen.name, 'admin')
      assert.equal(seen.url, '/admin')
    })
  })
})
