import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { request } from 'undici'
import { killCli, type StartedCli, startCli } from '../helpers/cli.ts'
import { eventually } from '../helpers/eventually.ts'
import { connectResult } from '../helpers/http.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/** A keep-alive connection that has had one complete response and now sits idle. */
async function idleConnection(port: number): Promise<{ socket: Socket; closed: () => boolean }> {
  const socket = connect(port, '127.0.0.1')
  let text = ''
  let closed = false
  socket.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk
  })
  socket.on('error', () => {})
  socket.on('close', () => {
    closed = true
  })
  socket.write('GET /fast HTTP/1.1\r\nHost: gatehouse.test\r\n\r\n')
  await eventually(() => text.endsWith('fast'))
  assert.match(text, /^HTTP\/1\.1 200 /)
  assert.match(text, /connection: keep-alive/i)
  return { socket, closed: () => closed }
}

describe('graceful shutdown', () => {
  let slow: Upstream
  let held: { req: IncomingMessage; res: ServerResponse }[] = []
  let dir: string
  let cli: StartedCli | undefined
  const config = (gracePeriod: string) => `
listeners:
  - port: 0
    host: 127.0.0.1
services:
  slow:
    targets: [${slow.url}]
routes:
  - path: /slow
    service: slow
  - path: /fast
    respond: { body: fast }
global:
  gracePeriod: ${gracePeriod}
accessLog: off
`
  const start = async (gracePeriod: string) => {
    const file = join(dir, `grace-${gracePeriod}.yaml`)
    await writeFile(file, config(gracePeriod))
    cli = await startCli(file)
    return cli
  }

  before(async () => {
    // Holds every request until the test answers it.
    slow = await startUpstream('slow', (req, res) => {
      req.resume()
      held.push({ req, res })
    })
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-shutdown-'))
  })
  afterEach(async () => {
    for (const { res } of held) res.destroy()
    held = []
    await killCli(cli)
    cli = undefined
  })
  after(async () => {
    await slow.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('on SIGTERM refuses new connections, closes idle ones, finishes the request in flight and exits 0', async () => {
    const gw = await start('30s')
    const port = gw.port()
    const idle = await idleConnection(port)
    const inFlight = request(`http://127.0.0.1:${port}/slow`)
    await eventually(() => held.length === 1)

    gw.signal('SIGTERM')
    const draining = await gw.waitForLog('draining and stopping')
    assert.equal(draining.signal, 'SIGTERM')
    assert.equal(draining.gracePeriodMs, 30_000)
    await eventually(async () => (await connectResult(port)) === 'ECONNREFUSED')
    await eventually(() => idle.closed())
    // Still draining: the slow request holds the process.
    assert.equal(gw.child.exitCode, null)

    held[0].res.writeHead(200, { 'content-type': 'application/json' })
    held[0].res.end(JSON.stringify({ finished: true }))
    const res = await inFlight
    assert.equal(res.statusCode, 200)
    assert.deepEqual(await res.body.json(), { finished: true })

    assert.deepEqual(await gw.exited, { code: 0, signal: null })
    assert.ok(gw.logs().some((l) => l.msg === 'stopped'))
    assert.doesNotMatch(gw.stderr(), /exiting anyway/)
  })

  it('cuts requests longer than the grace period, cancels them upstream and still exits 0', async () => {
    const gw = await start('1s')
    const port = gw.port()
    const inFlight = request(`http://127.0.0.1:${port}/slow`).then(
      (res) => `status ${res.statusCode}`,
      (error: NodeJS.ErrnoException) => error.code ?? error.message,
    )
    await eventually(() => held.length === 1)
    const upstreamClosed = new Promise((resolve) => held[0].req.socket.once('close', resolve))

    const signalledAt = Date.now()
    gw.signal('SIGTERM')
    const outcome = await inFlight
    assert.equal(outcome, 'UND_ERR_SOCKET', 'the client sees its connection closed, not a response')
    const cut = await gw.waitForLog('grace period over')
    assert.equal(cut.inflight, 1)
    assert.equal(cut.gracePeriodMs, 1000)
    assert.deepEqual(await gw.exited, { code: 0, signal: null })
    // The grace period was waited out (a lower bound, not a speed claim).
    assert.ok(Date.now() - signalledAt >= 900, 'exited before the grace period ended')
    await upstreamClosed
    assert.equal(held[0].res.headersSent, false)
    assert.doesNotMatch(gw.stderr(), /exiting anyway/)
  })

  it('drains on SIGINT the same way', async () => {
    const gw = await start('5s')
    const res = await request(`http://127.0.0.1:${gw.port()}/fast`)
    assert.equal(await res.body.text(), 'fast')
    gw.signal('SIGINT')
    assert.equal((await gw.waitForLog('draining and stopping')).signal, 'SIGINT')
    assert.deepEqual(await gw.exited, { code: 0, signal: null })
  })

  it('exits at once on a second SIGTERM while draining', async () => {
    const gw = await start('30s')
    const inFlight = request(`http://127.0.0.1:${gw.port()}/slow`).catch((error: Error) => error)
    await eventually(() => held.length === 1)
    gw.signal('SIGTERM')
    await gw.waitForLog('draining and stopping')
    gw.signal('SIGTERM')
    assert.deepEqual(await gw.exited, { code: null, signal: 'SIGTERM' })
    assert.ok((await inFlight) instanceof Error)
  })
})
