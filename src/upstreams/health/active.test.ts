import assert from 'node:assert/strict'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createTcpServer } from 'node:net'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { makeCertificates, type TestPki } from '../../../test/helpers/certs.ts'
import { eventually } from '../../../test/helpers/eventually.ts'
import { startUpstream, type Upstream, type UpstreamHandler } from '../../../test/helpers/upstream.ts'
import type { ActiveHealthConfig, ServiceConfig } from '../../config/types.ts'
import { roundRobin } from '../balancers/round-robin.ts'
import { UpstreamPool } from '../http1/pool.ts'
import { UpstreamService } from '../service.ts'
import { serverNameFor, Target } from '../target.ts'
import { ActiveHealthChecker } from './active.ts'
import { createProbe } from './probe.ts'

const silent = pino({ level: 'silent' })

const defaults: ActiveHealthConfig = {
  type: 'http',
  method: 'GET',
  path: '/',
  host: null,
  expectStatus: null,
  bodyMatch: null,
  intervalMs: 40,
  timeoutMs: 2000,
  healthyThreshold: 2,
  unhealthyThreshold: 3,
}
const plainTls: ServiceConfig['tls'] = { caFile: null, ca: null, serverName: null, verify: true }

const made: Target[] = []
function target(url: string, tls: ServiceConfig['tls'] = plainTls): Target {
  const origin = new URL(url).origin
  const config = { url, origin, weight: 1, backup: false, drain: false }
  const made1 = new Target(
    config,
    new UpstreamPool({ origin }),
    origin,
    serverNameFor(config, { tls } as ServiceConfig),
  )
  made.push(made1)
  return made1
}

function service(
  name: string,
  targets: Target[],
  active: Partial<ActiveHealthConfig> | null,
): UpstreamService {
  const config = {
    name,
    targets: [],
    healthCheck: { active: active === null ? null : { ...defaults, ...active }, passive: null },
    panicThreshold: 0,
    tls: plainTls,
  } as unknown as ServiceConfig
  const made = new UpstreamService(config, targets, () => ({
    balancer: roundRobin(targets),
    sticky: null,
    observers: [],
  }))
  made.selection.activate(performance.now())
  return made
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createTcpServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

const probeOnce = (check: Partial<ActiveHealthConfig>, t: Target, tls = plainTls) =>
  createProbe({ ...defaults, ...check }, tls)(t, new AbortController().signal)

after(async () => {
  await Promise.all(made.map((t) => t.pool.close()))
})

describe('health probes', () => {
  const upstreams: Upstream[] = []
  const start = async (handler?: UpstreamHandler) => {
    const upstream = await startUpstream('probe', handler)
    upstreams.push(upstream)
    return upstream
  }
  after(async () => {
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('passes on 200-399 by default, sends GET / with the target host', async () => {
    let status = 200
    const up = await start((_req, res) => res.writeHead(status).end())
    const t = target(up.url)
    assert.deepEqual(await probeOnce({}, t), { ok: true })
    assert.equal(up.requests[0].method, 'GET')
    assert.equal(up.requests[0].url, '/')
    assert.equal(up.requests[0].headers.host, `127.0.0.1:${up.port}`)
    status = 302
    assert.deepEqual(await probeOnce({}, t), { ok: true })
    status = 500
    assert.deepEqual(await probeOnce({}, t), { ok: false, reason: 'status 500' })
    status = 404
    assert.deepEqual(await probeOnce({}, t), { ok: false, reason: 'status 404' })
  })

  it('uses the method, path, Host header and statuses configured', async () => {
    const up = await start((_req, res) => res.writeHead(204).end())
    const t = target(up.url)
    const check = { method: 'HEAD', path: '/healthz?deep=1', host: 'health.internal', expectStatus: [204] }
    assert.deepEqual(await probeOnce(check, t), { ok: true })
    assert.equal(up.requests[0].method, 'HEAD')
    assert.equal(up.requests[0].url, '/healthz?deep=1')
    assert.equal(up.requests[0].headers.host, 'health.internal')
    assert.equal((await probeOnce({ expectStatus: [200] }, t)).ok, false)
  })

  it('matches the body against bodyMatch', async () => {
    let body = '{"status":"ok"}'
    const up = await start((_req, res) => res.writeHead(200).end(body))
    const t = target(up.url)
    assert.deepEqual(await probeOnce({ bodyMatch: '"status":\\s*"ok"' }, t), { ok: true })
    body = '{"status":"degraded"}'
    const result = await probeOnce({ bodyMatch: '"status":\\s*"ok"' }, t)
    assert.equal(result.ok, false)
    assert.match((result as { reason: string }).reason, /body does not match/)
  })

  it('fails on a timeout, a refused connection, and when stopped', async () => {
    const hang = await start(() => {})
    const timeout = await probeOnce({ timeoutMs: 150 }, target(hang.url))
    assert.deepEqual(timeout, { ok: false, reason: 'no answer within 150ms' })
    const refused = await probeOnce({}, target(`http://127.0.0.1:${await closedPort()}`))
    assert.equal(refused.ok, false)
    assert.match((refused as { reason: string }).reason, /^ECONNREFUSED/)
    const controller = new AbortController()
    const pending = createProbe({ ...defaults, timeoutMs: 30_000 }, plainTls)(
      target(hang.url),
      controller.signal,
    )
    controller.abort()
    assert.deepEqual(await pending, { ok: false, reason: 'stopped' })
  })

  it('checks TCP by connecting', async () => {
    const up = await start()
    assert.deepEqual(await probeOnce({ type: 'tcp' }, target(up.url)), { ok: true })
    assert.equal(up.requests.length, 0)
    const refused = await probeOnce({ type: 'tcp' }, target(`http://127.0.0.1:${await closedPort()}`))
    assert.match((refused as { reason: string }).reason, /^ECONNREFUSED/)
  })

  describe('https targets', () => {
    let pki: TestPki
    let server: ReturnType<typeof createHttpsServer>
    let url: string
    before(async () => {
      pki = await makeCertificates(['upstream.internal'])
      const cert = pki.certs['upstream.internal']
      server = createHttpsServer({ cert: cert.cert, key: cert.key }, (req, res) => {
        res.writeHead(200).end(req.headers.host)
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      url = `https://127.0.0.1:${(server.address() as { port: number }).port}`
    })
    after(async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await pki.remove()
    })

    it("honour the service's CA, server name and verify settings", async () => {
      const tls = { caFile: null, ca: pki.ca.cert, serverName: 'upstream.internal', verify: true }
      assert.deepEqual(await probeOnce({ bodyMatch: '^127\\.0\\.0\\.1:' }, target(url, tls), tls), {
        ok: true,
      })
      // Without the CA the certificate cannot be verified.
      const untrusted = { ...tls, ca: null }
      const failed = await probeOnce({}, target(url, untrusted), untrusted)
      assert.equal(failed.ok, false)
      // Wrong name: verification fails on the identity check.
      const wrongName = { ...tls, serverName: 'other.internal' }
      assert.equal((await probeOnce({}, target(url, wrongName), wrongName)).ok, false)
      const unverified = { ...untrusted, verify: false }
      assert.deepEqual(await probeOnce({}, target(url, unverified), unverified), { ok: true })
    })
  })
})

describe('active health checker', () => {
  const upstreams: Upstream[] = []
  const checkers: ActiveHealthChecker[] = []
  /** An upstream whose health answer the test sets; `failNext` fails only the next N probes. */
  async function healthServer() {
    const control = { healthy: true, failNext: 0 }
    const upstream = await startUpstream('health', (_req, res) => {
      const ok = control.healthy && control.failNext === 0
      if (control.failNext > 0) control.failNext--
      res.writeHead(ok ? 200 : 503).end()
    })
    upstreams.push(upstream)
    return { upstream, control }
  }
  const checker = () => {
    const made = new ActiveHealthChecker({ logger: silent })
    checkers.push(made)
    return made
  }
  after(async () => {
    for (const c of checkers) c.stop()
    await Promise.all(upstreams.map((u) => u.close()))
  })

  it('flips a verdict only after the thresholds in a row, updates the selection and logs', async () => {
    const { upstream, control } = await healthServer()
    const t = target(upstream.url)
    const other = target(upstream.url)
    const svc = service('svc', [t, other], {})
    const lines: { msg: string; target: string; reason?: string }[] = []
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) })
    const health = new ActiveHealthChecker({ logger })
    checkers.push(health)
    health.update(new Map([['svc', svc]]))
    assert.equal(health.size, 2)
    await eventually(() => upstream.requests.length >= 4, { timeout: 10_000 })
    // Two failures, twice over, with passes between: never three in a row.
    for (let round = 0; round < 2; round++) {
      const seen = upstream.requests.length
      control.failNext = 2
      await eventually(() => upstream.requests.length >= seen + 6, { timeout: 10_000 })
    }
    assert.equal(t.state.healthy, true)
    control.healthy = false
    await eventually(() => !t.state.healthy && !other.state.healthy, { timeout: 10_000 })
    assert.equal(t.state.selectable, false)
    assert.equal(t.state.lastCheckFailure, 'status 503')
    control.healthy = true
    await eventually(() => t.state.healthy && other.state.healthy, { timeout: 10_000 })
    assert.equal(t.state.selectable, true)
    assert.equal(t.state.lastCheckFailure, null)
    // One line per change of verdict, for each of the two targets.
    const down = 'target down: failed its active health checks'
    const up = 'target up: passed its active health checks'
    assert.deepEqual(
      lines.map((line) => line.msg),
      [down, down, up, up],
    )
    assert.equal(lines[0].reason, 'status 503')
    assert.equal(lines[0].target, t.url)
  })

  it('ends a passive ejection when an active check passes, keeping the ejection count', async () => {
    const { upstream } = await healthServer()
    const t = target(upstream.url)
    const svc = service('svc', [t, target(upstream.url)], {})
    t.state.ejectedUntil = performance.now() + 60_000
    t.state.ejections = 2
    svc.selection.update(performance.now())
    assert.equal(t.state.selectable, false)
    checker().update(new Map([['svc', svc]]))
    await eventually(() => t.state.ejectedUntil === 0 && t.state.selectable, { timeout: 10_000 })
    assert.equal(t.state.ejections, 2)
  })

  it('keeps the checks of targets that remain, stops removed ones, starts new ones, and stops', async () => {
    const a = await healthServer()
    const b = await healthServer()
    const c = await healthServer()
    const clock = await healthServer()
    // A separate checker whose probes tell time passing, without a sleep.
    checker().update(new Map([['clock', service('clock', [target(clock.upstream.url)], {})]]))
    const ticks = async (n: number) => {
      const from = clock.upstream.requests.length
      await eventually(() => clock.upstream.requests.length >= from + n, { timeout: 10_000 })
    }

    const ta = target(a.upstream.url)
    const tb = target(b.upstream.url)
    a.control.healthy = false
    const health = checker()
    health.update(new Map([['svc', service('svc', [ta, tb], {})]]))
    await eventually(() => !ta.state.healthy, { timeout: 10_000 })

    // Next snapshot: a stays (same state object), b goes, c comes; the service is a new object.
    const ta2 = new Target(
      { url: ta.url, origin: ta.origin, weight: 1, backup: false, drain: false },
      ta.pool,
      ta.poolKey,
      null,
      ta.state,
    )
    const tc = target(c.upstream.url)
    const next = service('svc', [ta2, tc], {})
    health.update(new Map([['svc', next]]))
    assert.equal(health.size, 2)
    assert.equal(ta2.state.healthy, false)
    assert.equal(ta2.state.selectable, false)
    const bSeen = b.upstream.requests.length
    await eventually(() => c.upstream.requests.length >= 2, { timeout: 10_000 })
    await ticks(3)
    // At most one probe of b was already under way when it was removed.
    assert.ok(b.upstream.requests.length <= bSeen + 1)

    // a recovers: the verdict goes to the service now serving.
    a.control.healthy = true
    await eventually(() => ta2.state.healthy, { timeout: 10_000 })
    assert.equal(ta2.state.selectable, true)

    // Checks turned off for a target that is down: it is up again, as nothing would bring it back.
    a.control.healthy = false
    await eventually(() => !ta2.state.healthy, { timeout: 10_000 })
    const withoutChecks = service('svc', [ta2, tc], null)
    health.update(new Map([['svc', withoutChecks]]))
    assert.equal(health.size, 0)
    assert.equal(ta2.state.healthy, true)
    assert.equal(ta2.state.selectable, true)

    health.update(new Map([['svc', next]]))
    assert.equal(health.size, 2)
    health.stop()
    assert.equal(health.size, 0)
    health.update(new Map([['svc', next]]))
    assert.equal(health.size, 0)
    const seen = a.upstream.requests.length + c.upstream.requests.length
    await ticks(4)
    assert.ok(a.upstream.requests.length + c.upstream.requests.length <= seen + 2)
  })
})
