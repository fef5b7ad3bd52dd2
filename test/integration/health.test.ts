/**
 * Health over real sockets: passive ejection of a hanging and a failing
 * target, active checks taking a killed target out and bringing it back on
 * the same port, backups, panic, draining, slow start, and the per-target
 * state the metrics and admin API read (Gateway.upstreamStates()).
 *
 * Retries are not part of this suite, so a request sent to a target before
 * it is found out fails; the tests assert that after detection none goes
 * there any more, and report how many failed before (t.diagnostic).
 */
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { createCleanup } from '../helpers/cleanup.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, targetState } from '../helpers/gateway.ts'
import { listenOn, startUpstream } from '../helpers/upstream.ts'

/** A backend: `/health` answers `health`, `/slow` waits for release(), anything else JSON {name}. */
interface Backend {
  readonly name: string
  readonly port: number
  readonly url: string
  health: number
  /** Health checks received. */
  checks: number
  /** Requests other than health checks. */
  hits: number
  /** /slow requests waiting. */
  readonly held: (() => void)[]
  release(): void
  close(): Promise<void>
}

async function backend(name: string, port = 0): Promise<Backend> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((req, res) => {
    if (req.url === '/health') {
      self.checks++
      res.writeHead(self.health).end()
      return
    }
    self.hits++
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ name }))
    }
    if (req.url === '/slow') self.held.push(answer)
    else answer()
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  // Restarting on the port of a killed target: listenOn retries while the port settles.
  const bound = await listenOn(server, port)
  const self: Backend = {
    name,
    port: bound,
    url: `http://127.0.0.1:${bound}`,
    health: 200,
    checks: 0,
    hits: 0,
    held: [],
    release: () => {
      for (const answer of self.held.splice(0)) answer()
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
  return self
}

interface Outcome {
  status: number
  name: string | null
  code: string | null
}

async function get(url: string): Promise<Outcome> {
  const res = await request(url)
  const text = await res.body.text()
  let body: { name?: string; code?: string } = {}
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: res.statusCode, name: body.name ?? null, code: body.code ?? null }
}

async function getMany(url: string, count: number): Promise<Outcome[]> {
  const out: Outcome[] = []
  for (let i = 0; i < count; i++) out.push(await get(url))
  return out
}

function countBy(outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const o of outcomes) {
    const key = o.status === 200 ? (o.name ?? '?') : String(o.status)
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

describe('health', () => {
  const cleanup = createCleanup()
  after(() => cleanup.run())
  const track = cleanup.track

  it('ejects a target that accepts connections but never answers (passive)', async (t) => {
    const hang = track(await startUpstream('hang', () => {}))
    const good = track(await startUpstream('good'))
    const gw = track(
      await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services:
  svc:
    targets: [${good.url}, ${hang.url}]
    timeouts: {response: 300ms}
    healthCheck:
      passive: {failures: 2, window: 1m, ejectionTime: 1m}
routes: [{path: /, service: svc}]
`),
    )
    const before: Outcome[] = []
    while (!targetState(gw, 'svc', hang.url).ejected && before.length < 40) before.push(await get(gw.url()))
    const state = targetState(gw, 'svc', hang.url)
    assert.equal(state.ejected, true)
    assert.equal(state.selectable, false)
    assert.equal(state.ejections, 1)
    const failed = before.filter((o) => o.status !== 200)
    assert.equal(failed.length, 2)
    assert.ok(failed.every((o) => o.status === 504 && o.code === 'GH_UPSTREAM_TIMEOUT'))
    const seen = hang.requests.length
    const afterwards = await getMany(gw.url(), 20)
    assert.deepEqual(countBy(afterwards), { good: 20 })
    assert.equal(hang.requests.length, seen)
    t.diagnostic(`hanging target: ${failed.length} of ${before.length} requests failed (504) before ejection`)
  })

  it('takes out a target that answers 500 to everything: passively by status, actively by its checks', async (t) => {
    const broken = track(
      await startUpstream('broken', (_req, res) => res.writeHead(500).end('{"name":"broken"}')),
    )
    const good = track(await startUpstream('good'))
    const gw = track(
      await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services:
  passive:
    targets: [${good.url}, ${broken.url}]
    healthCheck:
      passive: {failures: 3, window: 1m, statuses: [500, 502, 503, 504], ejectionTime: 1m}
  active:
    targets: [${good.url}, ${broken.url}]
    healthCheck:
      active: {path: /health, interval: 100ms, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 2}
routes:
  - {path: /p, service: passive}
  - {path: /a, service: active}
`),
    )
    const before: Outcome[] = []
    while (!targetState(gw, 'passive', broken.url).ejected && before.length < 40)
      before.push(await get(`${gw.url()}/p`))
    assert.equal(targetState(gw, 'passive', broken.url).ejected, true)
    const failed = before.filter((o) => o.status === 500).length
    assert.equal(failed, 3)
    assert.deepEqual(countBy(await getMany(`${gw.url()}/p`, 10)), { good: 10 })

    await eventually(() => targetState(gw, 'active', broken.url).healthy === false, { timeout: 10_000 })
    const down = targetState(gw, 'active', broken.url)
    assert.equal(down.lastCheckFailure, 'status 500')
    assert.equal(down.selectable, false)
    assert.equal(targetState(gw, 'active', good.url).healthy, true)
    assert.deepEqual(countBy(await getMany(`${gw.url()}/a`, 10)), { good: 10 })
    t.diagnostic(`500 target: ${failed} of ${before.length} requests answered 500 before ejection`)
  })

  it('marks a killed target down within about interval x unhealthyThreshold, and back when it restarts', async (t) => {
    const a = track(await backend('a'))
    let b = await backend('b')
    cleanup.defer(() => b.close())
    const c = track(await backend('c'))
    const gw = track(
      await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services:
  svc:
    targets: [${a.url}, ${b.url}, ${c.url}]
    healthCheck:
      active: {path: /health, interval: 200ms, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 2}
routes: [{path: /, service: svc}]
`),
    )
    const url = `${gw.url()}/work`
    assert.deepEqual(countBy(await getMany(url, 9)), { a: 3, b: 3, c: 3 })

    // Steady traffic while b dies; bounded in count.
    const during: Outcome[] = []
    let stop = false
    const load = (async () => {
      for (let i = 0; i < 5000 && !stop; i++) during.push(await get(url))
    })()
    await eventually(() => during.length >= 10)
    const killedAt = performance.now()
    await b.close()
    await eventually(() => !targetState(gw, 'svc', b.url).healthy, { timeout: 15_000 })
    const detectedMs = performance.now() - killedAt
    stop = true
    await load
    const failed = during.filter((o) => o.status !== 200)
    assert.ok(failed.every((o) => o.status === 502 && o.code === 'GH_UPSTREAM_UNREACHABLE'))
    assert.match(targetState(gw, 'svc', b.url).lastCheckFailure ?? '', /ECONNREFUSED/)
    // Found out: nothing goes to b any more (a and c alternate, give or take the balancer's carried scores).
    const without = countBy(await getMany(url, 20))
    assert.deepEqual(Object.keys(without).sort(), ['a', 'c'])
    assert.ok(Math.abs(without.a - without.c) <= 4, JSON.stringify(without))

    const restartedAt = performance.now()
    b = await backend('b', b.port)
    await eventually(() => targetState(gw, 'svc', b.url).healthy, { timeout: 15_000 })
    const recoveredMs = performance.now() - restartedAt
    const back = countBy(await getMany(url, 30))
    assert.deepEqual(Object.keys(back).sort(), ['a', 'b', 'c'])
    assert.ok(back.b >= 7, JSON.stringify(back))
    assert.equal(b.hits, back.b)
    t.diagnostic(
      `killed target: ${failed.length} of ${during.length} requests failed (502) before detection; ` +
        `down after ${Math.round(detectedMs)}ms, back after ${Math.round(recoveredMs)}ms ` +
        '(interval 200ms, thresholds 2/2)',
    )
  })

  it('serves backups only when every primary is down, panics below the threshold, keeps verdicts across reloads', async () => {
    const p = track(await backend('p'))
    const k = track(await backend('k'))
    const q = [track(await backend('q1')), track(await backend('q2')), track(await backend('q3'))]
    const check =
      'active: {path: /health, interval: 100ms, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 2}'
    const yaml = (extraRoute: string) => `
listeners: [{port: 0, host: 127.0.0.1}]
services:
  backed:
    targets: [${p.url}, {url: ${k.url}, backup: true}]
    healthCheck: {${check}}
  pool:
    targets: [${q.map((b) => b.url).join(', ')}]
    healthCheck: {${check}}
routes:
  - {path: /backed, service: backed}
  - {path: /pool, service: pool}
${extraRoute}`
    const gw = track(await startGateway(yaml('')))
    assert.deepEqual(countBy(await getMany(`${gw.url()}/backed`, 6)), { p: 6 })

    p.health = 503
    await eventually(() => !targetState(gw, 'backed', p.url).healthy, { timeout: 10_000 })
    assert.deepEqual(countBy(await getMany(`${gw.url()}/backed`, 6)), { k: 6 })
    // A reload keeps the verdict (and the checks) of a target that remains.
    await gw.write(yaml('  - {path: /other, respond: {status: 204}}'))
    assert.equal((await gw.gateway.reload()).ok, true)
    assert.equal(targetState(gw, 'backed', p.url).healthy, false)
    assert.deepEqual(countBy(await getMany(`${gw.url()}/backed`, 6)), { k: 6 })
    p.health = 200
    await eventually(() => targetState(gw, 'backed', p.url).healthy, { timeout: 10_000 })
    assert.deepEqual(countBy(await getMany(`${gw.url()}/backed`, 6)), { p: 6 })

    // One of three down (67% up): the other two serve.
    q[0].health = 503
    await eventually(() => !targetState(gw, 'pool', q[0].url).healthy, { timeout: 10_000 })
    assert.deepEqual(countBy(await getMany(`${gw.url()}/pool`, 6)), { q2: 3, q3: 3 })
    // Two of three down (33% < 50%): panic, all three serve rather than one taking everything.
    q[1].health = 503
    await eventually(() => !targetState(gw, 'pool', q[1].url).healthy, { timeout: 10_000 })
    const panic = countBy(await getMany(`${gw.url()}/pool`, 9))
    assert.deepEqual(Object.keys(panic).sort(), ['q1', 'q2', 'q3'])
    assert.ok(gw.gateway.upstreamStates().pool.every((s) => s.selectable))
  })

  it('drains a target: the request in flight finishes, new ones go elsewhere', async () => {
    const a = track(await backend('a'))
    const b = track(await backend('b'))
    const yaml = (drained: string | null) => `
listeners: [{port: 0, host: 127.0.0.1}]
services:
  svc:
    targets:
${[a, b].map((x) => `      - {url: ${x.url}${x.url === drained ? ', drain: true' : ''}}`).join('\n')}
routes: [{path: /, service: svc}]
`
    const gw = track(await startGateway(yaml(null)))
    const slow = get(`${gw.url()}/slow`)
    await eventually(() => a.held.length + b.held.length === 1)
    const [busy, other] = a.held.length === 1 ? [a, b] : [b, a]
    assert.equal(targetState(gw, 'svc', busy.url).inflight, 1)

    await gw.write(yaml(busy.url))
    assert.equal((await gw.gateway.reload()).ok, true)
    const drained = targetState(gw, 'svc', busy.url)
    assert.equal(drained.draining, true)
    assert.equal(drained.selectable, false)
    assert.equal(drained.inflight, 1)
    assert.deepEqual(countBy(await getMany(`${gw.url()}/fast`, 10)), { [other.name]: 10 })

    busy.release()
    assert.deepEqual(await slow, { status: 200, name: busy.name, code: null })
    await eventually(() => targetState(gw, 'svc', busy.url).inflight === 0)
    assert.equal(busy.hits, 1)

    // Undrained by the next reload, it serves again.
    await gw.write(yaml(null))
    assert.equal((await gw.gateway.reload()).ok, true)
    assert.deepEqual(countBy(await getMany(`${gw.url()}/fast`, 10)), { a: 5, b: 5 })
  })

  it('leaves draining and selection alone when a reload is refused', async () => {
    const a = track(await backend('a'))
    const b = track(await backend('b'))
    const k = track(await backend('k'))
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    cleanup.defer(() => new Promise((resolve) => taken.close(() => resolve())))
    const takenPort = (taken.address() as AddressInfo).port
    const yaml = (drainB: boolean, extraListener: string) => `
listeners: [{port: 0, host: 127.0.0.1}${extraListener}]
services:
  svc:
    targets: [${a.url}, {url: ${b.url}, drain: ${drainB}}, {url: ${k.url}, backup: true}]
routes: [{path: /, service: svc}]
`
    const gw = track(await startGateway(yaml(false, '')))
    // Compiles, then fails to listen on a port in use: the serving snapshot must not see the drain.
    await gw.write(yaml(true, `, {port: ${takenPort}, host: 127.0.0.1}`))
    assert.equal((await gw.gateway.reload()).ok, false)
    assert.equal(targetState(gw, 'svc', b.url).draining, false)
    assert.equal(targetState(gw, 'svc', b.url).selectable, true)
    assert.deepEqual(countBy(await getMany(`${gw.url()}/x`, 4)), { a: 2, b: 2 })
  })

  it('ramps a recovered target up over slowStart', async (t) => {
    const a = track(await backend('a'))
    const b = track(await backend('b'))
    const slowStartMs = 2000
    const gw = track(
      await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services:
  svc:
    targets: [${a.url}, ${b.url}]
    slowStart: 2s
    panicThreshold: 0
    healthCheck:
      active: {path: /health, interval: 100ms, timeout: 1s, unhealthyThreshold: 1, healthyThreshold: 1}
routes: [{path: /, service: svc}]
`),
    )
    const url = `${gw.url()}/work`
    b.health = 503
    await eventually(() => !targetState(gw, 'svc', b.url).healthy, { timeout: 10_000 })
    // Both targets ramp from the gateway's start: let a reach its full weight first.
    await eventually(() => targetState(gw, 'svc', a.url).upForMs >= slowStartMs, { timeout: 15_000 })
    b.health = 200
    await eventually(() => targetState(gw, 'svc', b.url).selectable, { timeout: 10_000 })
    const early = countBy(await getMany(url, 20))
    const upForMs = targetState(gw, 'svc', b.url).upForMs
    // The share b can have had at most, from 10% of its weight at the start of the ramp to `upForMs`.
    const weight = Math.min(1, 0.1 + (0.9 * upForMs) / slowStartMs)
    const bound = Math.ceil((20 * weight) / (1 + weight)) + 2
    assert.ok((early.b ?? 0) <= bound, `b got ${early.b} of 20 early (bound ${bound}, up ${upForMs}ms)`)
    assert.ok((early.b ?? 0) >= 1, 'b gets a share from the start of the ramp')

    await eventually(() => targetState(gw, 'svc', b.url).upForMs >= slowStartMs, { timeout: 15_000 })
    const late = countBy(await getMany(url, 20))
    assert.ok(Math.abs((late.b ?? 0) - 10) <= 2, `b got ${late.b} of 20 at full weight`)
    t.diagnostic(
      `slow start: b had ${early.b} of 20 requests ${upForMs}ms after recovery, ${late.b} of 20 at full weight`,
    )
  })

  it('stops the active checks when the gateway stops', async () => {
    const x = track(await backend('x'))
    const clock = track(await backend('clock'))
    const yaml = (target: Backend) => `
listeners: [{port: 0, host: 127.0.0.1}]
services:
  svc:
    targets: [${target.url}]
    healthCheck:
      active: {path: /health, interval: 50ms}
routes: [{path: /, service: svc}]
`
    const gw = await startGateway(yaml(x))
    await eventually(() => x.checks >= 3)
    await gw.stop()
    const seen = x.checks
    // Another gateway's checks tell time passing, without a sleep.
    const other = track(await startGateway(yaml(clock)))
    await eventually(() => clock.checks >= 6)
    assert.ok(x.checks <= seen + 1, `${x.checks - seen} checks after stop`)
    await other.stop()
  })

  it('gives the state of every target as one structure', async () => {
    const a = track(await backend('a'))
    const k = track(await backend('k'))
    const gw = track(
      await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services:
  svc:
    targets: [{url: ${a.url}, weight: 3}, {url: ${k.url}, backup: true}]
routes: [{path: /, service: svc}]
`),
    )
    assert.equal((await get(gw.url())).status, 200)
    const states = gw.gateway.upstreamStates()
    assert.deepEqual(Object.keys(states), ['svc'])
    const [primary, backup] = states.svc
    assert.equal(typeof primary.upForMs, 'number')
    assert.ok(primary.upForMs >= 0)
    assert.equal(typeof primary.latencyEwmaMs, 'number')
    const { upForMs: _u1, latencyEwmaMs: _l1, ...rest } = primary
    assert.deepEqual(rest, {
      url: a.url,
      weight: 3,
      backup: false,
      healthy: true,
      ejected: false,
      ejectedForMs: 0,
      draining: false,
      selectable: true,
      inflight: 0,
      ejections: 0,
      lastCheckFailure: null,
      circuit: null,
    })
    assert.equal(backup.url, k.url)
    assert.equal(backup.backup, true)
    assert.equal(backup.selectable, false)
    // Plain data: it survives JSON as it is.
    assert.deepEqual(JSON.parse(JSON.stringify(states)), states)
  })
})
