import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { parse, stringify } from 'yaml'
import { startGateway, type TestGateway } from '../../../test/helpers/gateway.ts'
import { rawRequest, statusOf } from '../../../test/helpers/raw.ts'
import { startUpstream, type Upstream } from '../../../test/helpers/upstream.ts'
import { type ConfigError, loadConfigText } from '../../config/index.ts'
import { builtinPlugins } from '../index.ts'

interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: string
  requestId: string
}

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, text }
}

/** Every route answers from one upstream; the plugin decides who gets there. */
const routes = `
routes:
  - {path: /open, service: app}
  - {path: /loopback, service: app, plugins: [{name: ip-restriction, config: {allow: [127.0.0.0/8]}}]}
  - {path: /elsewhere, service: app, plugins: [{name: ip-restriction, config: {allow: [10.0.0.0/8, 192.168.1.1]}}]}
  - {path: /deny-wins, service: app, plugins: [{name: ip-restriction, config: {allow: [127.0.0.0/8], deny: [127.0.0.1]}}]}
  - {path: /doc-net, service: app, plugins: [{name: ip-restriction, config: {allow: [203.0.113.0/24]}}]}
  - path: /v6
    service: app
    plugins: [{name: ip-restriction, config: {allow: ['2001:db8::/32', 203.0.113.7], deny: ['2001:db8:bad::/48']}}]
  - {path: /custom, service: app, plugins: [{name: ip-restriction, config: {deny: [0.0.0.0/0], message: Go away}}]}
`

describe('ip-restriction, client is the TCP peer (no trusted proxies)', () => {
  let app: Upstream
  let gw: TestGateway
  before(async () => {
    app = await startUpstream('app')
    gw = await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services: {app: {targets: [${app.url}]}}
${routes}
`)
  })
  after(async () => {
    await gw.stop()
    await app.close()
  })

  it('lets in a client inside an allowed range', async () => {
    assert.equal((await get(`${gw.url()}/open`)).status, 200)
    assert.equal((await get(`${gw.url()}/loopback`)).status, 200)
  })

  it('refuses a client outside the allow list with a 403 problem, and the target sees nothing', async () => {
    const before = app.requests.length
    const res = await get(`${gw.url()}/elsewhere`, { 'x-request-id': 'ip-1' })
    assert.equal(res.status, 403)
    assert.equal(res.headers['content-type'], 'application/problem+json')
    const problem = JSON.parse(res.text) as Problem
    assert.equal(problem.code, 'GH_FORBIDDEN')
    assert.equal(problem.type, 'urn:gatehouse:problem:forbidden')
    assert.equal(problem.status, 403)
    assert.equal(problem.detail, 'Your address is not allowed')
    assert.equal(problem.requestId, 'ip-1')
    assert.equal(app.requests.length, before)
  })

  it('lets deny win over allow', async () => {
    const res = await get(`${gw.url()}/deny-wins`)
    assert.equal(res.status, 403)
    assert.equal((JSON.parse(res.text) as Problem).code, 'GH_FORBIDDEN')
  })

  it('uses the configured message as the detail', async () => {
    const res = await get(`${gw.url()}/custom`)
    assert.equal(res.status, 403)
    assert.equal((JSON.parse(res.text) as Problem).detail, 'Go away')
  })

  it('ignores X-Forwarded-For from a peer that is not a trusted proxy: a spoofed header gets nobody in', async () => {
    const spoofed = await get(`${gw.url()}/doc-net`, { 'x-forwarded-for': '203.0.113.7' })
    assert.equal(spoofed.status, 403)
    // Nor out of a ban.
    const banned = await get(`${gw.url()}/deny-wins`, { 'x-forwarded-for': '10.9.9.9' })
    assert.equal(banned.status, 403)
  })

  it('refuses an upgrade (WebSocket) request the same way', async () => {
    const { text } = await rawRequest(
      gw.port(),
      'GET /elsewhere HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    )
    assert.equal(statusOf(text), 403)
    assert.match(text, /"code":"GH_FORBIDDEN"/)
  })
})

describe('ip-restriction behind a trusted proxy', () => {
  let app: Upstream
  let gw: TestGateway
  before(async () => {
    app = await startUpstream('app')
    gw = await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services: {app: {targets: [${app.url}]}}
global:
  trustedProxies: [127.0.0.1]
  plugins: [{name: ip-restriction, config: {deny: [192.0.2.0/24]}}]
${routes}
`)
  })
  after(async () => {
    await gw.stop()
    await app.close()
  })

  const status = async (path: string, xff?: string) =>
    (await get(`${gw.url()}${path}`, xff === undefined ? {} : { 'x-forwarded-for': xff })).status

  it('takes the client address from X-Forwarded-For', async () => {
    assert.equal(await status('/doc-net', '203.0.113.7'), 200)
    assert.equal(await status('/doc-net', '198.51.100.1'), 403)
    // Without the header the client is the proxy itself.
    assert.equal(await status('/doc-net'), 403)
    assert.equal(await status('/loopback'), 200)
  })

  it('reads X-Forwarded-For right to left, skipping trusted hops; a client-written left part is ignored', async () => {
    assert.equal(await status('/doc-net', '203.0.113.7, 127.0.0.1'), 200)
    assert.equal(await status('/doc-net', '203.0.113.7, 198.51.100.1'), 403)
  })

  it('matches IPv6 ranges, deny winning inside an allowed range', async () => {
    assert.equal(await status('/v6', '2001:db8::1'), 200)
    assert.equal(await status('/v6', '2001:db8:ffff::42'), 200)
    assert.equal(await status('/v6', '2001:db9::1'), 403)
    assert.equal(await status('/v6', '2001:db8:bad::1'), 403)
    // An IPv4 entry in the same list still applies to IPv4 clients.
    assert.equal(await status('/v6', '203.0.113.7'), 200)
    assert.equal(await status('/v6', '203.0.113.8'), 403)
  })

  it('when attached globally, applies to requests that match no route (403, not 404)', async () => {
    const banned = await get(`${gw.url()}/nowhere`, { 'x-forwarded-for': '192.0.2.9' })
    assert.equal(banned.status, 403)
    assert.equal((JSON.parse(banned.text) as Problem).code, 'GH_FORBIDDEN')
    const other = await get(`${gw.url()}/nowhere`, { 'x-forwarded-for': '198.51.100.1' })
    assert.equal(other.status, 404)
    // And to every route.
    assert.equal(await status('/open', '192.0.2.9'), 403)
    assert.equal(await status('/open', '198.51.100.1'), 200)
  })
})

describe('ip-restriction on an IPv6 listener', () => {
  let app: Upstream
  let gw: TestGateway | null = null
  before(async () => {
    app = await startUpstream('app')
    const ipv6 = await new Promise<boolean>((resolve) => {
      const probe = createServer()
      probe.once('error', () => resolve(false))
      probe.listen(0, '::1', () => probe.close(() => resolve(true)))
    })
    if (!ipv6) return
    gw = await startGateway(`
listeners: [{port: 0, host: '::1'}]
services: {app: {targets: [${app.url}]}}
routes:
  - {path: /in, service: app, plugins: [{name: ip-restriction, config: {allow: ['::1/128']}}]}
  - {path: /out, service: app, plugins: [{name: ip-restriction, config: {deny: ['::1']}}]}
`)
  })
  after(async () => {
    await gw?.stop()
    await app.close()
  })

  it('matches an IPv6 peer', async (t) => {
    if (gw === null) {
      t.skip('no IPv6 loopback on this machine')
      return
    }
    const base = `http://[::1]:${gw.port()}`
    assert.equal((await get(`${base}/in`)).status, 200)
    assert.equal((await get(`${base}/out`)).status, 403)
  })
})

describe('ip-restriction config', () => {
  const problemsOf = (pluginConfig: string) => {
    try {
      loadConfigText(
        'gatehouse.yaml',
        `listeners: [{port: 0}]\nroutes: [{path: /, respond: {status: 204}}]\nplugins:\n  ip-restriction: ${pluginConfig}\n`,
        { plugins: builtinPlugins(), env: {} },
      )
    } catch (error) {
      return (error as ConfigError).problems.map((p) => `${p.path}: ${p.message}`)
    }
    return []
  }

  it('refuses addresses and ranges that are not, each with its path', () => {
    assert.deepEqual(problemsOf('{allow: [10.0.0.0/8, "::1/64", 203.0.113.7]}'), [])
    const cases: [string, RegExp][] = [
      ['{allow: [10.0.0.0/33]}', /allow\[0\]: expected an IP address or CIDR range, got "10.0.0.0\/33"/],
      ['{allow: [10.0.0.0/8/1]}', /allow\[0\]: expected an IP address or CIDR range/],
      ['{deny: [ok, 10.0.0.1]}', /deny\[0\]: expected an IP address or CIDR range, got "ok"/],
      ['{deny: ["2001:db8::/129"]}', /deny\[0\]: expected an IP address or CIDR range/],
      ['{allow: [256.1.1.1]}', /allow\[0\]: expected an IP address or CIDR range/],
      ['{}', /ip-restriction: give at least one of allow or deny/],
      ['{allow: [], deny: []}', /give at least one of allow or deny/],
      ['{allowed: [10.0.0.1]}', /unknown key "allowed"/],
    ]
    for (const [config, expected] of cases) {
      const problems = problemsOf(config)
      assert.ok(
        problems.some((p) => expected.test(p)),
        `${config}: ${JSON.stringify(problems)} should match ${expected}`,
      )
    }
  })
})

describe('ip-restriction README example', () => {
  it('runs as written, with a listener added and the target replaced', async () => {
    const readme = await readFile(new URL('./README.md', import.meta.url), 'utf8')
    const config = parse(/```yaml\n([\s\S]*?)```/.exec(readme)![1]) as {
      listeners?: unknown[]
      services: Record<string, { targets: string[] }>
    }
    const admin = await startUpstream('admin')
    config.listeners = [{ port: 0, host: '127.0.0.1' }]
    config.services.admin.targets = [admin.url]
    const gw = await startGateway(stringify(config))
    try {
      // 127.0.0.1 is not in the office range, and not a trusted proxy: its X-Forwarded-For is not believed.
      const res = await get(`${gw.url()}/admin`, { 'x-forwarded-for': '198.51.100.10' })
      assert.equal(res.status, 403)
      assert.equal(
        (JSON.parse(res.text) as Problem).detail,
        'The admin interface is only reachable from the office network',
      )
      assert.equal(admin.requests.length, 0)
      assert.equal((await get(`${gw.url()}/elsewhere`)).status, 404)
    } finally {
      await gw.stop()
      await admin.close()
    }
  })
})
