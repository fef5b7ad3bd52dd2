/**
 * `workers: 2`: two worker threads serving the same port (SO_REUSEPORT),
 * driven by the main thread: reloads all-or-nothing, a dead thread
 * replaced without touching the other's connections, health verdicts from
 * the main thread, and a graceful stop that drains both.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { get, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connect as connectTls } from 'node:tls'
import pino from 'pino'
import { makeCertificates } from '../helpers/certs.ts'
import { createCleanup } from '../helpers/cleanup.ts'
import { killCli, type StartedCli, startCli } from '../helpers/cli.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway, targetState } from '../helpers/gateway.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/** Enough connections that the kernel's hash puts some on each thread (all on one: 2 in 65,536). */
const CONNECTIONS = 16

interface Answer {
  status: number
  body: string
}

/** One GET on a connection of its own, so the kernel picks a thread for each. */
function getOnNewConnection(url: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        body += chunk
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

/** An upstream that holds every response until release(). */
async function startHoldingUpstream(): Promise<Upstream & { held: ServerResponse[]; release(): void }> {
  const held: ServerResponse[] = []
  const upstream = await startUpstream('holding', (_req: IncomingMessage, res: ServerResponse) => {
    held.push(res)
  })
  return Object.assign(upstream, {
    held,
    release() {
      for (const res of held.splice(0)) res.end('released')
    },
  })
}

/** True when nothing accepts TCP connections on the port any more. */
function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
  })
}

function logCapture(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = []
  const logger = pino(
    { level: 'info' },
    { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
  )
  return { logger, lines }
}

/** Two threads, one listener on port 0, one service over `targets` (with `serviceLines` under it). */
const config = (targets: string | string[], serviceLines = '', extra = '') => `
workers: 2
listeners:
  - port: 0
    host: 127.0.0.1
services:
  app:
    targets: ${JSON.stringify([targets].flat())}
${serviceLines}
routes:
  - path: /
    service: app
${extra}`

describe('worker threads', () => {
  const cleanup = createCleanup()
  after(() => cleanup.run())

  it('serves one port from two threads, with the requests spread between them', async () => {
    const upstream = cleanup.track(await startHoldingUpstream())
    const gw = cleanup.track(await startGateway(config(upstream.url)))
    const pool = gw.gateway.workers
    assert.ok(pool !== null, 'workers: 2 runs worker threads')
    assert.equal(pool.size, 2)
    const answers = Array.from({ length: CONNECTIONS }, () => getOnNewConnection(`${gw.url()}/x`))
    await eventually(() => upstream.held.length === CONNECTIONS, { timeout: 10_000 })
    const stats = await pool.stats()
    assert.equal(stats.length, 2)
    assert.equal(stats[0].inflight + stats[1].inflight, CONNECTIONS)
    assert.ok(
      stats.every((s) => s.inflight > 0),
      `both threads serve: ${stats.map((s) => s.inflight)}`,
    )
    upstream.release()
    for (const answer of await Promise.all(answers))
      assert.deepEqual(answer, { status: 200, body: 'released' })
  })

  it('refuses to start, with no thread left behind, when a port is taken', async () => {
    const squatter = cleanup.track(await startUpstream('squatter'))
    const { logger, lines } = logCapture()
    await assert.rejects(
      startGateway(config(squatter.url).replace('port: 0', `port: ${squatter.port}`), {}, { logger }),
      (error: NodeJS.ErrnoException) => error.code === 'EADDRINUSE',
    )
    assert.equal(lines.filter((l) => l.level === 50).length, 0, 'a refused start is not a crash')
    const answer = await getOnNewConnection(`http://127.0.0.1:${squatter.port}/`)
    assert.equal(JSON.parse(answer.body).name, 'squatter')
  })

  it('reloads every thread or none', async () => {
    const upstream = cleanup.track(await startUpstream('app'))
    const gw = cleanup.track(await startGateway(config(upstream.url)))
    const pool = gw.gateway.workers!
    await gw.write(
      config(upstream.url).replace(
        'routes:',
        'routes:\n  - path: /v\n    respond: { status: 200, body: "version 2" }',
      ),
    )
    assert.deepEqual(await gw.gateway.reload(), { ok: true, version: 2 })
    assert.deepEqual(
      (await pool.stats()).map((s) => s.version),
      [2, 2],
    )
    const answers = await Promise.all(
      Array.from({ length: CONNECTIONS }, () => getOnNewConnection(`${gw.url()}/v`)),
    )
    for (const answer of answers) assert.deepEqual(answer, { status: 200, body: 'version 2' })

    // A listener on a port that another process holds: every thread keeps version 2, nothing opened anywhere.
    const squatter = cleanup.track(await startUpstream('squatter'))
    const withTakenPort = config(upstream.url).replace(
      'services:',
      `  - port: ${squatter.port}\n    host: 127.0.0.1\nservices:`,
    )
    await gw.write(withTakenPort)
    const refused = await gw.gateway.reload()
    assert.equal(refused.ok, false)
    assert.match((refused as { error: Error }).error.message, /EADDRINUSE|in use/)
    assert.deepEqual(
      (await pool.stats()).map((s) => s.version),
      [2, 2],
    )
    const still = await Promise.all(Array.from({ length: 8 }, () => getOnNewConnection(`${gw.url()}/v`)))
    for (const answer of still) assert.equal(answer.body, 'version 2')
    const squatted = await getOnNewConnection(`http://127.0.0.1:${squatter.port}/`)
    assert.equal(JSON.parse(squatted.body).name, 'squatter')

    // An invalid file changes nothing on any thread.
    await gw.write('workers: 2\nlisteners: nope\n')
    assert.equal((await gw.gateway.reload()).ok, false)
    assert.deepEqual(
      (await pool.stats()).map((s) => s.version),
      [2, 2],
    )
  })

  it('a reload that changes workers adds or retires threads', async () => {
    const upstream = cleanup.track(await startUpstream('app'))
    const gw = cleanup.track(await startGateway(config(upstream.url)))
    const pool = gw.gateway.workers!
    await gw.write(config(upstream.url).replace('workers: 2', 'workers: 3'))
    assert.deepEqual(await gw.gateway.reload(), { ok: true, version: 2 })
    assert.deepEqual(
      (await pool.stats()).map((s) => s.version),
      [2, 2, 2],
    )
    const answers = await Promise.all(
      Array.from({ length: CONNECTIONS }, () => getOnNewConnection(`${gw.url()}/x`)),
    )
    for (const answer of answers) assert.equal(answer.status, 200)
    const three = pool.threads()
    await gw.write(config(upstream.url).replace('workers: 2', 'workers: 1'))
    assert.deepEqual(await gw.gateway.reload(), { ok: true, version: 3 })
    assert.deepEqual(
      (await pool.stats()).map((s) => s.version),
      [3],
    )
    // Retired threads drain and exit (a connection queued on a listener as it closes is reset: docs/workers.md).
    await eventually(() => three.slice(1).every((thread) => thread.threadId === -1), { timeout: 10_000 })
    const after = await Promise.all(
      Array.from({ length: CONNECTIONS }, () => getOnNewConnection(`${gw.url()}/x`)),
    )
    for (const answer of after) assert.equal(answer.status, 200)
  })

  it('replaces a thread that dies; requests on the other thread finish', async () => {
    const upstream = cleanup.track(await startHoldingUpstream())
    const { logger, lines } = logCapture()
    const gw = cleanup.track(await startGateway(config(upstream.url), {}, { logger }))
    const pool = gw.gateway.workers!
    const answers = Array.from({ length: CONNECTIONS }, () =>
      getOnNewConnection(`${gw.url()}/x`).catch((error: Error) => error),
    )
    await eventually(() => upstream.held.length === CONNECTIONS, { timeout: 10_000 })
    const [first, second] = await pool.stats()
    assert.ok(first.inflight > 0 && second.inflight > 0, 'both threads hold requests')
    const dead = pool.threads()[0]
    const deadId = dead.threadId
    await dead.terminate()
    await eventually(() => lines.some((l) => String(l.msg).startsWith('worker thread exited unexpectedly')))
    upstream.release()
    const settled = await Promise.all(answers)
    const served = settled.filter((a) => !(a instanceof Error))
    assert.equal(served.length, second.inflight, 'every request on the surviving thread was answered')
    for (const answer of served) assert.deepEqual(answer, { status: 200, body: 'released' })
    assert.equal(settled.length - served.length, first.inflight)

    await eventually(
      () => pool.threads()[0] !== dead && lines.some((l) => l.msg === 'replacement worker thread serving'),
      {
        timeout: 10_000,
      },
    )
    assert.equal(pool.restarts, 1)
    const crashLog = lines.find((l) => String(l.msg).startsWith('worker thread exited unexpectedly'))!
    assert.equal(crashLog.worker, 0)
    assert.equal(crashLog.restarts, 1)
    assert.equal(crashLog.threadId, deadId)
    const after = Array.from({ length: CONNECTIONS }, () => getOnNewConnection(`${gw.url()}/x`))
    await eventually(() => upstream.held.length === CONNECTIONS, { timeout: 10_000 })
    assert.ok(
      (await pool.stats()).every((s) => s.inflight > 0),
      'the replacement serves the port too',
    )
    upstream.release()
    for (const answer of await Promise.all(after)) assert.equal(answer.status, 200)
  })

  describe('health verdicts from the main thread', () => {
    let down: Upstream
    let up: Upstream
    let gw: TestGateway
    before(async () => {
      up = cleanup.track(await startUpstream('up'))
      down = cleanup.track(
        await startUpstream('down', (req, res) => {
          res.writeHead(req.url === '/health' ? 503 : 200).end('down')
        }),
      )
      gw = cleanup.track(
        await startGateway(
          config(
            [up.url, down.url],
            '    healthCheck:\n      active: { path: /health, interval: 100ms, unhealthyThreshold: 1 }',
          ),
        ),
      )
    })

    it('every thread stops sending to a target the main thread found down', async () => {
      await eventually(() => targetState(gw, 'app', down.url).healthy === false, { timeout: 10_000 })
      const seenBefore = down.requests.filter((r) => r.url !== '/health').length
      const answers = await Promise.all(
        Array.from({ length: CONNECTIONS }, () => getOnNewConnection(`${gw.url()}/work`)),
      )
      for (const answer of answers) assert.equal(JSON.parse(answer.body).name, 'up')
      assert.equal(down.requests.filter((r) => r.url !== '/health').length, seenBefore)
    })
  })

  it('a passive ejection on one thread ejects the target on every thread', async () => {
    const good = cleanup.track(await startUpstream('good'))
    const bad = cleanup.track(await startUpstream('bad', (_req, res) => res.writeHead(503).end('bad')))
    const gw = cleanup.track(
      await startGateway(
        config(
          [good.url, bad.url],
          '    retries: { attempts: 1 }\n' +
            '    healthCheck:\n      passive: { failures: 3, window: 1m, ejectionTime: 1m, maxEjectedPercent: 50 }',
        ),
      ),
    )
    // One request at a time until some thread has seen 3 failures: the other has seen at most 2.
    for (let i = 0; i < 40 && !targetState(gw, 'app', bad.url).ejected; i++)
      await getOnNewConnection(`${gw.url()}/x`)
    assert.equal(targetState(gw, 'app', bad.url).ejected, true, 'the main thread heard of the ejection')
    const seen = bad.requests.length
    const answers = await Promise.all(
      Array.from({ length: CONNECTIONS }, () => getOnNewConnection(`${gw.url()}/x`)),
    )
    for (const answer of answers) assert.equal(answer.status, 200)
    assert.equal(bad.requests.length, seen, 'no thread sent to the ejected target')
  })

  it('a graceful stop drains every thread', async () => {
    const upstream = cleanup.track(await startHoldingUpstream())
    const gw = await startGateway(config(upstream.url))
    const pool = gw.gateway.workers!
    const url = gw.url()
    const port = gw.port()
    const answers = Array.from({ length: CONNECTIONS }, () => getOnNewConnection(`${url}/x`))
    await eventually(() => upstream.held.length === CONNECTIONS, { timeout: 10_000 })
    assert.ok((await pool.stats()).every((s) => s.inflight > 0))
    const stopped = gw.stop(10_000)
    // No new connections while draining, on any thread.
    await eventually(() => connectRefused(port), { timeout: 10_000 })
    upstream.release()
    for (const answer of await Promise.all(answers))
      assert.deepEqual(answer, { status: 200, body: 'released' })
    await stopped
    for (const thread of pool.threads()) assert.equal(thread.threadId, -1, 'the thread has exited')
  })

  it('a TLS session resumes whichever thread the next connection reaches, also after a reload', async () => {
    const upstream = cleanup.track(await startUpstream('app'))
    const pki = await makeCertificates(['api.example.com'])
    cleanup.defer(() => pki.remove())
    const cert = pki.certs['api.example.com']
    const tlsConfig = (name: string) =>
      config(upstream.url, '', `  - path: /${name}\n    respond: { status: 200 }`).replace(
        '    host: 127.0.0.1\n',
        `    host: 127.0.0.1\n    tls:\n      certificates: [{cert: ${cert.certFile}, key: ${cert.keyFile}}]\n`,
      )
    const gw = cleanup.track(await startGateway(tlsConfig('one')))
    const port = gw.port()
    /** A new connection offering `session`: whether the server resumed it (TLS 1.3 PSK, RFC 8446 §2.2). */
    const resumes = (session: Buffer) =>
      new Promise<boolean>((resolve, reject) => {
        const socket = connectTls({
          port,
          host: '127.0.0.1',
          servername: 'api.example.com',
          ca: pki.ca.cert,
          session,
        })
        socket.once('secureConnect', () => {
          resolve(socket.isSessionReused())
          socket.end()
        })
        socket.once('error', reject)
        socket.setTimeout(10_000, () => socket.destroy(new Error('no TLS handshake within 10 s')))
      })
    /** A first connection, kept until the server has sent a ticket. */
    const ticket = () =>
      new Promise<Buffer>((resolve, reject) => {
        const socket = connectTls({ port, host: '127.0.0.1', servername: 'api.example.com', ca: pki.ca.cert })
        socket.once('session', (session: Buffer) => {
          resolve(session)
          socket.end()
        })
        socket.once('error', reject)
        socket.setTimeout(10_000, () => socket.destroy(new Error('no TLS handshake within 10 s')))
      })
    const session = await ticket()
    const resumed = await Promise.all(Array.from({ length: CONNECTIONS }, () => resumes(session)))
    assert.deepEqual(
      resumed,
      resumed.map(() => true),
      'every connection resumed, on either thread',
    )
    await gw.write(tlsConfig('two'))
    assert.equal((await gw.gateway.reload()).ok, true)
    const afterReload = await Promise.all(Array.from({ length: 8 }, () => resumes(session)))
    assert.deepEqual(
      afterReload,
      afterReload.map(() => true),
      'tickets from before the reload still resume',
    )
  })

  it('gatehouse start: two threads, SIGHUP reloads both, SIGTERM drains both and exits 0', async () => {
    const a = cleanup.track(await startUpstream('a'))
    const b = cleanup.track(await startUpstream('b'))
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-workers-'))
    cleanup.defer(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'gatehouse.yaml')
    await writeFile(file, `${config(a.url)}\naccessLog: off\n`)
    let cli: StartedCli | undefined = await startCli(file, { args: ['--no-watch'] })
    cleanup.defer(() => killCli(cli))
    const started = await cli.waitForLog('gatehouse started')
    assert.equal(started.workers, 2)
    const url = `http://127.0.0.1:${cli.port()}/x`
    const names = async () =>
      new Set(
        (await Promise.all(Array.from({ length: CONNECTIONS }, () => getOnNewConnection(url)))).map(
          (answer) => JSON.parse(answer.body).name as string,
        ),
      )
    assert.deepEqual(await names(), new Set(['a']))
    await writeFile(file, `${config(b.url)}\naccessLog: off\n`)
    cli.signal('SIGHUP')
    assert.equal((await cli.waitForLog('configuration reloaded')).version, 2)
    assert.deepEqual(await names(), new Set(['b']), 'every thread serves the new config')
    cli.signal('SIGTERM')
    assert.deepEqual(await cli.exited, { code: 0, signal: null })
    cli = undefined
  })
})
