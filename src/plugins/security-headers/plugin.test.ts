import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { createServer } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { Agent, request } from 'undici'
import { parse, stringify } from 'yaml'
import { makeCertificates, type TestPki } from '../../../test/helpers/certs.ts'
import { startGateway, type TestGateway } from '../../../test/helpers/gateway.ts'
import { startUpstream, type Upstream } from '../../../test/helpers/upstream.ts'
import { type ConfigError, loadConfigText } from '../../config/index.ts'
import { builtinPlugins } from '../index.ts'

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

describe('security-headers', () => {
  let plain: Upstream
  let opinionated: Upstream
  let pki: TestPki
  let gw: TestGateway
  let tlsAgent: Agent
  before(async () => {
    plain = await startUpstream('plain')
    // A target that sets its own policy headers.
    opinionated = await startUpstream('opinionated', (_req, res) => {
      res.writeHead(200, {
        'x-frame-options': 'SAMEORIGIN',
        'content-security-policy': "default-src 'none'",
        'strict-transport-security': 'max-age=60',
        'referrer-policy': 'no-referrer',
      })
      res.end('mine')
    })
    pki = await makeCertificates(['localhost'])
    const cert = pki.certs.localhost
    tlsAgent = new Agent({ connect: { ca: pki.ca.cert, servername: 'localhost' } })
    gw = await startGateway(`
listeners:
  - {name: web, port: 0, host: 127.0.0.1}
  - name: secure
    port: 0
    host: 127.0.0.1
    tls:
      certificates: [{cert: ${cert.certFile}, key: ${cert.keyFile}}]
services:
  plain: {targets: [${plain.url}]}
  opinionated: {targets: [${opinionated.url}]}
  down: {targets: ['http://127.0.0.1:${await closedPort()}']}
plugins:
  ip-restriction: {deny: [127.0.0.1]}
global:
  plugins: [security-headers]
routes:
  - {path: /plain, service: plain}
  - {path: /mine, service: opinionated}
  - name: mine-overridden
    path: /override
    service: opinionated
    plugins:
      - name: security-headers
        config: {override: true, contentSecurityPolicy: "default-src 'self'", frameOptions: SAMEORIGIN}
  - name: custom
    path: /custom
    service: plain
    plugins:
      - name: security-headers
        config:
          hsts: {maxAge: 31536000, preload: true}
          referrerPolicy: no-referrer, strict-origin
          contentSecurityPolicy: "default-src 'self'; img-src *"
          contentTypeOptions: false
  - name: no-hsts
    path: /no-hsts
    service: plain
    plugins: [{name: security-headers, config: {hsts: false, frameOptions: false, referrerPolicy: false}}]
  - {path: /banned, service: plain, plugins: [ip-restriction]}
  - {path: /down, service: down}
`)
  })
  after(async () => {
    await gw.stop()
    await tlsAgent.close()
    await Promise.all([plain.close(), opinionated.close(), pki.remove()])
  })

  const secure = (path: string) =>
    request(`https://localhost:${gw.port('secure')}${path}`, { dispatcher: tlsAgent })

  it('sets the defaults on a proxied response, and no HSTS over plain HTTP (RFC 6797 §7.2)', async () => {
    const res = await request(`${gw.url('web')}/plain`)
    assert.equal(res.statusCode, 200)
    await res.body.dump()
    assert.equal(res.headers['x-content-type-options'], 'nosniff')
    assert.equal(res.headers['x-frame-options'], 'DENY')
    assert.equal(res.headers['referrer-policy'], 'strict-origin-when-cross-origin')
    assert.equal(res.headers['content-security-policy'], undefined)
    assert.equal(res.headers['strict-transport-security'], undefined)
  })

  it('sends HSTS over HTTPS, with the configured directives', async () => {
    const res = await secure('/plain')
    assert.equal(res.statusCode, 200)
    await res.body.dump()
    assert.equal(res.headers['strict-transport-security'], 'max-age=15552000; includeSubDomains')
    assert.equal(res.headers['x-frame-options'], 'DENY')

    const custom = await secure('/custom')
    await custom.body.dump()
    assert.equal(custom.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains; preload')
    assert.equal(custom.headers['referrer-policy'], 'no-referrer, strict-origin')
    assert.equal(custom.headers['content-security-policy'], "default-src 'self'; img-src *")
    assert.equal(custom.headers['x-content-type-options'], undefined)
  })

  it('leaves out what is turned off, HSTS included on HTTPS', async () => {
    const res = await secure('/no-hsts')
    await res.body.dump()
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['strict-transport-security'], undefined)
    assert.equal(res.headers['x-frame-options'], undefined)
    assert.equal(res.headers['referrer-policy'], undefined)
    assert.equal(res.headers['x-content-type-options'], 'nosniff')
  })

  it("keeps the target's own headers unless override is set", async () => {
    const kept = await secure('/mine')
    assert.equal(await kept.body.text(), 'mine')
    assert.equal(kept.headers['x-frame-options'], 'SAMEORIGIN')
    assert.equal(kept.headers['content-security-policy'], "default-src 'none'")
    assert.equal(kept.headers['strict-transport-security'], 'max-age=60')
    assert.equal(kept.headers['referrer-policy'], 'no-referrer')
    // What the target did not set is still added.
    assert.equal(kept.headers['x-content-type-options'], 'nosniff')

    const replaced = await secure('/override')
    await replaced.body.dump()
    assert.equal(replaced.headers['x-frame-options'], 'SAMEORIGIN')
    assert.equal(replaced.headers['content-security-policy'], "default-src 'self'")
    assert.equal(replaced.headers['strict-transport-security'], 'max-age=15552000; includeSubDomains')
    assert.equal(replaced.headers['referrer-policy'], 'strict-origin-when-cross-origin')
  })

  it('puts the headers on replies Gatehouse makes itself: 404, 403, 502', async () => {
    const cases: [string, number, string][] = [
      ['/nowhere', 404, 'GH_ROUTE_NOT_FOUND'],
      ['/banned', 403, 'GH_FORBIDDEN'],
      ['/down', 502, 'GH_UPSTREAM_UNREACHABLE'],
    ]
    for (const [path, status, code] of cases) {
      const res = await secure(path)
      assert.equal(res.statusCode, status, path)
      assert.equal(((await res.body.json()) as { code: string }).code, code)
      assert.equal(res.headers['content-type'], 'application/problem+json')
      assert.equal(res.headers['x-content-type-options'], 'nosniff', path)
      assert.equal(res.headers['x-frame-options'], 'DENY', path)
      assert.equal(res.headers['referrer-policy'], 'strict-origin-when-cross-origin', path)
      assert.equal(res.headers['strict-transport-security'], 'max-age=15552000; includeSubDomains', path)
    }
  })
})

describe('security-headers behind a proxy that terminates TLS', () => {
  let upstream: Upstream
  const config = (trusted: string) => `
listeners: [{port: 0, host: 127.0.0.1}]
services: {app: {targets: [URL]}}
global: {plugins: [security-headers]${trusted}}
routes: [{path: /, service: app}]
`
  let trusting: TestGateway
  let untrusting: TestGateway
  before(async () => {
    upstream = await startUpstream('app')
    trusting = await startGateway(config(', trustedProxies: [127.0.0.1]').replace('URL', upstream.url))
    untrusting = await startGateway(config('').replace('URL', upstream.url))
  })
  after(async () => {
    await Promise.all([trusting.stop(), untrusting.stop()])
    await upstream.close()
  })

  it('sends HSTS when a trusted proxy says the client came over HTTPS', async () => {
    const res = await request(`${trusting.url()}/`, { headers: { 'x-forwarded-proto': 'https' } })
    await res.body.dump()
    assert.equal(res.headers['strict-transport-security'], 'max-age=15552000; includeSubDomains')
    const overHttp = await request(`${trusting.url()}/`, { headers: { 'x-forwarded-proto': 'http' } })
    await overHttp.body.dump()
    assert.equal(overHttp.headers['strict-transport-security'], undefined)
  })

  it('ignores X-Forwarded-Proto from a peer that is not a trusted proxy', async () => {
    const res = await request(`${untrusting.url()}/`, { headers: { 'x-forwarded-proto': 'https' } })
    await res.body.dump()
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['strict-transport-security'], undefined)
  })
})

describe('security-headers config', () => {
  const load = (pluginConfig: string) =>
    loadConfigText(
      'gatehouse.yaml',
      `
listeners: [{port: 0}]
routes: [{path: /, respond: {status: 204}}]
plugins:
  security-headers: ${pluginConfig}
`,
      { plugins: builtinPlugins(), env: {} },
    )
  const problemsOf = (pluginConfig: string) => {
    try {
      load(pluginConfig)
    } catch (error) {
      return (error as ConfigError).problems.map((p) => `${p.path}: ${p.message}`)
    }
    assert.fail('expected the config to be refused')
  }

  it('accepts a full valid config', () => {
    const config = load(
      `{hsts: {maxAge: 63072000, includeSubDomains: true, preload: true}, frameOptions: SAMEORIGIN, referrerPolicy: same-origin, contentSecurityPolicy: "default-src 'self'", override: true}`,
    )
    assert.ok(config.routes.length === 1)
  })

  it('refuses bad values at load, each with its path', () => {
    const cases: [string, RegExp][] = [
      [
        '{frameOptions: ALLOW-FROM}',
        /^plugins\.security-headers\.frameOptions: expected "DENY", "SAMEORIGIN" or false/,
      ],
      ['{referrerPolicy: "no-referer"}', /referrerPolicy: unknown referrer policy "no-referer"/],
      ['{contentSecurityPolicy: "a\\nb"}', /contentSecurityPolicy: must be a non-empty header value/],
      ['{contentSecurityPolicy: ""}', /contentSecurityPolicy: must be a non-empty header value/],
      ['{hsts: {maxAge: -1}}', /hsts\.maxAge: expected a number >= 0/],
      ['{hsts: {preload: true}}', /hsts\.maxAge: preload requires a maxAge of at least 31536000/],
      [
        '{hsts: {maxAge: 31536000, includeSubDomains: false, preload: true}}',
        /hsts\.includeSubDomains: preload requires/,
      ],
      ['{xFrameOptions: DENY}', /unknown key "xFrameOptions"; did you mean "frameOptions"/],
    ]
    for (const [config, expected] of cases) {
      const problems = problemsOf(config)
      assert.ok(
        problems.some((p) => expected.test(p)),
        `${config}: ${JSON.stringify(problems)} should match ${expected}`,
      )
    }
  })

  it('refuses to start a gateway with a bad config', async () => {
    await assert.rejects(
      startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
routes: [{path: /, respond: {status: 204}, plugins: [{name: security-headers, config: {referrerPolicy: everywhere}}]}]
`),
      (error: Error) =>
        error.name === 'ConfigError' &&
        /routes\[0\]\.plugins\[0\]\.config\.referrerPolicy/.test(error.message),
    )
  })
})

describe('security-headers README example', () => {
  it('runs as written (ports 0, generated certificate, targets left unreachable)', async () => {
    const readme = await readFile(new URL('./README.md', import.meta.url), 'utf8')
    const yaml = /```yaml\n([\s\S]*?)```/.exec(readme)![1]
    const pki = await makeCertificates(['localhost'])
    const agent = new Agent({ connect: { ca: pki.ca.cert, servername: 'localhost' } })
    // Only what cannot run here changes: ports, certificate files and the (absent) targets.
    const config = parse(yaml) as {
      listeners: { tls?: { certificates: unknown[] } }[]
      services: Record<string, { targets: string[] }>
    }
    const [https, http] = config.listeners
    Object.assign(https, { name: 'https', port: 0, host: '127.0.0.1' })
    https.tls!.certificates = [{ cert: pki.certs.localhost.certFile, key: pki.certs.localhost.keyFile }]
    Object.assign(http, { name: 'http', port: 0, host: '127.0.0.1' })
    const nowhere = `http://127.0.0.1:${await closedPort()}`
    for (const service of Object.values(config.services) as { targets: string[] }[])
      service.targets = [nowhere]
    const gw = await startGateway(stringify(config))
    try {
      const res = await request(`https://localhost:${gw.port('https')}/`, { dispatcher: agent })
      assert.equal(((await res.body.json()) as { code: string }).code, 'GH_UPSTREAM_UNREACHABLE')
      assert.equal(res.headers['strict-transport-security'], 'max-age=63072000; includeSubDomains; preload')
      assert.match(
        String(res.headers['content-security-policy']),
        /^default-src 'self'; img-src 'self' data:/,
      )
      assert.equal(res.headers['x-frame-options'], 'DENY')
      const widget = await request(`https://localhost:${gw.port('https')}/widget`, { dispatcher: agent })
      await widget.body.dump()
      assert.equal(widget.headers['x-frame-options'], 'SAMEORIGIN')
      assert.equal(
        widget.headers['content-security-policy'],
        undefined,
        'the route attachment replaces the global one',
      )
      const redirect = await request(`http://127.0.0.1:${gw.port('http')}/page`)
      await redirect.body.dump()
      assert.equal(redirect.statusCode, 308)
      assert.equal(redirect.headers['strict-transport-security'], undefined)
      assert.equal(redirect.headers['x-content-type-options'], 'nosniff')
    } finally {
      await gw.stop()
      await agent.close()
      await pki.remove()
    }
  })
})
