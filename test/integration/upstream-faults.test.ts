/**
 * What a client sees when the target misbehaves: each fault has its status
 * and problem `code`, answers long before the defaults (5 s connect, 60 s
 * response) would, and a response that breaks after its head reaches the
 * client visibly broken, never as a clean short response.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { request } from 'undici'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { bodyOf, rawRequest, statusOf } from '../helpers/raw.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/** The client gives up after this; every fault must be answered before it. */
const CLIENT_TIMEOUT_MS = 2000
/** The blackhole's listen backlog: its accept queue is full with BACKLOG + 1 connections. */
const BACKLOG = 1

interface Problem {
  status: number
  code: string
  detail: string
  requestId: string
}

describe('upstream faults', () => {
  let gw: TestGateway
  let closedPort: number
  let raw: RawUpstream
  let blackhole: Blackhole
  let slow: Upstream
  /** What the `hold` upstream saw: requests by path, and which of them the gateway cancelled. */
  const held = new Map<string, { res: ServerResponse; closedEarly: boolean }>()

  before(async () => {
    closedPort = await freePort()
    raw = await startRawUpstream((socket, head) => {
      if (head.startsWith('GET /reset-rst')) socket.resetAndDestroy()
      else if (head.startsWith('GET /reset-fin')) socket.destroy()
      else if (head.startsWith('GET /garbage')) socket.end('garbage\r\n\r\n')
      else if (head.startsWith('GET /unasked-100'))
        socket.end('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal')
      else if (head.startsWith('GET /bad-status'))
        socket.end('HTTP/1.1 2x0 Nope\r\ncontent-length: 0\r\n\r\n')
    })
    blackhole = await startBlackhole()
    slow = await startUpstream('slow', holdingHandler(held))
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
services:
  refused:
    targets: [http://127.0.0.1:${closedPort}]
  raw:
    targets: [http://127.0.0.1:${raw.port}]
  blackhole:
    targets: [http://127.0.0.1:${blackhole.port}]
    timeouts: {connect: 200ms}
  slow:
    targets: [${slow.url}]
    timeouts: {response: 200ms, idle: 300ms}
  patient:
    targets: [${slow.url}]
  drained:
    targets: [{url: ${slow.url}, weight: 0}, {url: http://127.0.0.1:${closedPort}, weight: 0}]
routes:
  - {path: /refused, service: refused}
  - {path: /reset-rst, service: raw}
  - {path: /reset-fin, service: raw}
  - {path: /garbage, service: raw}
  - {path: /bad-status, service: raw}
  - {path: /unasked-100, service: raw}
  - {path: /connect, service: blackhole}
  - {path: /slow, service: slow}
  - {path: /hold, service: patient}
  - {path: /none, service: drained}
`)
  })

  after(async () => {
    await gw.stop(0)
    await Promise.all([raw.close(), blackhole.close(), slow.close()])
  })

  async function problemFor(
    path: string,
  ): Promise<{ status: number; contentType: unknown; problem: Problem }> {
    const res = await request(`${gw.url()}${path}`, { signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) })
    const problem = (await res.body.json()) as Problem
    assert.equal(problem.status, res.statusCode)
    assert.equal(problem.requestId, res.headers['x-request-id'])
    return { status: res.statusCode, contentType: res.headers['content-type'], problem }
  }

  it('answers 502 GH_UPSTREAM_UNREACHABLE when the target refuses the connection', async () => {
    const { status, contentType, problem } = await problemFor('/refused')
    assert.equal(status, 502)
    assert.equal(contentType, 'application/problem+json')
    assert.equal(problem.code, 'GH_UPSTREAM_UNREACHABLE')
    assert.match(problem.detail, /refused/)
  })

  it('keeps the client connection open after an error reply to a complete request', async () => {
    const twice = 'GET /refused HTTP/1.1\r\nHost: gw\r\n\r\n'.repeat(2)
    const result = await rawRequest(
      gw.port(),
      `${twice}GET /none HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n`,
    )
    const statuses = [...result.text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((match) => Number(match[1]))
    assert.deepEqual(statuses, [502, 502, 503])
  })

  it('answers 502 to a request with a body, and closes the connection when the body was not read', async () => {
    const result = await rawRequest(
      gw.port(),
      'POST /refused HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: 11\r\n\r\nhello world',
    )
    assert.equal(statusOf(result.text), 502)
    assert.match(result.text, /"code":"GH_UPSTREAM_UNREACHABLE"/)
    // A chunked body still arriving when the answer is ready: the gateway answers, then closes.
    const partial = await rawRequest(
      gw.port(),
      'POST /refused HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n',
    )
    assert.equal(statusOf(partial.text), 502)
    assert.match(partial.text, /connection: close/i)
    assert.equal(partial.closed, true)
  })

  it('answers 502 GH_UPSTREAM_UNREACHABLE when the target resets the connection (RST)', async () => {
    const { status, problem } = await problemFor('/reset-rst')
    assert.equal(status, 502)
    assert.equal(problem.code, 'GH_UPSTREAM_UNREACHABLE')
  })

  it('answers 502 GH_UPSTREAM_UNREACHABLE when the target closes without answering (FIN)', async () => {
    const { status, problem } = await problemFor('/reset-fin')
    assert.equal(status, 502)
    assert.equal(problem.code, 'GH_UPSTREAM_UNREACHABLE')
  })

  it('answers 502 GH_UPSTREAM_BAD_RESPONSE for a garbage status line', async () => {
    for (const path of ['/garbage', '/bad-status']) {
      const { status, problem } = await problemFor(path)
      assert.equal(status, 502, path)
      assert.equal(problem.code, 'GH_UPSTREAM_BAD_RESPONSE', path)
    }
  })

  it('skips a 100 the target sends unasked and relays its final response (RFC 9110 §15.2)', async () => {
    const result = await rawRequest(
      gw.port(),
      'GET /unasked-100 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n',
    )
    assert.equal(statusOf(result.text), 200)
    assert.doesNotMatch(result.text, /100 Continue/)
    assert.equal(bodyOf(result.text), 'final')
  })

  it('answers 504 GH_UPSTREAM_TIMEOUT when connecting takes longer than timeouts.connect', async () => {
    // The blackhole's accept queue is full, so the kernel drops the gateway's SYN: a real connect that never completes.
    await blackhole.fill()
    const { status, problem } = await problemFor('/connect')
    assert.equal(status, 504)
    assert.equal(problem.code, 'GH_UPSTREAM_TIMEOUT')
    assert.match(problem.detail, /[Cc]onnect/)
  })

  it('answers 504 GH_UPSTREAM_TIMEOUT when the response head is later than timeouts.response', async () => {
    const { status, problem } = await problemFor('/slow/head')
    assert.equal(status, 504)
    assert.equal(problem.code, 'GH_UPSTREAM_TIMEOUT')
    // The target's request is cancelled, not left running.
    await eventually(() => held.get('/slow/head')?.closedEarly === true)
  })

  it('answers 503 GH_NO_TARGET when every target has weight 0', async () => {
    const { status, problem } = await problemFor('/none')
    assert.equal(status, 503)
    assert.equal(problem.code, 'GH_NO_TARGET')
  })

  it('cuts a chunked response whose target dies mid-body: no last chunk, connection closed', async () => {
    const result = await rawRequest(gw.port(), 'GET /slow/die-chunked HTTP/1.1\r\nHost: gw\r\n\r\n', 5000)
    assert.equal(result.closed, true)
    assert.equal(statusOf(result.text), 200)
    assert.match(result.text, /transfer-encoding: chunked/i)
    assert.match(result.text, /first part/)
    assert.doesNotMatch(result.text, /\r\n0\r\n\r\n$/)
    await assert.rejects(readAll('/slow/die-chunked'))
  })

  it('cuts a Content-Length response whose target dies mid-body: closed short of the length', async () => {
    const result = await rawRequest(gw.port(), 'GET /slow/die-length HTTP/1.1\r\nHost: gw\r\n\r\n', 5000)
    assert.equal(result.closed, true)
    assert.equal(statusOf(result.text), 200)
    assert.match(result.text, /content-length: 100\r\n/i)
    const body = result.text.slice(result.text.indexOf('\r\n\r\n') + 4)
    assert.equal(body, 'first part')
    await assert.rejects(readAll('/slow/die-length'))
  })

  it('cuts a response whose body stalls longer than timeouts.idle', async () => {
    const result = await rawRequest(gw.port(), 'GET /slow/stall HTTP/1.1\r\nHost: gw\r\n\r\n', 5000)
    assert.equal(result.closed, true)
    assert.equal(statusOf(result.text), 200)
    assert.match(result.text, /first part/)
    assert.doesNotMatch(result.text, /\r\n0\r\n\r\n$/)
    await eventually(() => held.get('/slow/stall')?.closedEarly === true)
  })

  it('cancels the upstream request when the client goes away mid-response', async () => {
    const controller = new AbortController()
    const res = await request(`${gw.url()}/hold/mid-body`, { signal: controller.signal })
    assert.equal(res.statusCode, 200)
    const reader = res.body[Symbol.asyncIterator]()
    const first = await reader.next()
    assert.equal(String(first.value), 'first part')
    controller.abort()
    await eventually(() => held.get('/hold/mid-body')?.closedEarly === true)
  })

  it('cancels the upstream request when the client goes away before the response head', async () => {
    const socket = connect(gw.port(), '127.0.0.1')
    socket.on('error', () => {})
    socket.write('GET /hold/no-head HTTP/1.1\r\nHost: gw\r\n\r\n')
    await eventually(() => held.has('/hold/no-head'))
    socket.destroy()
    await eventually(() => held.get('/hold/no-head')?.closedEarly === true)
  })

  it('cancels the upstream request when the client goes away mid-upload', async () => {
    const socket = connect(gw.port(), '127.0.0.1')
    socket.on('error', () => {})
    socket.write('POST /hold/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\nfirst part')
    await eventually(() => held.has('/hold/upload'))
    socket.destroy()
    await eventually(() => held.get('/hold/upload')?.closedEarly === true)
  })

  it('keeps serving after all of the above', async () => {
    const res = await request(`${gw.url()}/hold/ok`, { signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) })
    assert.equal(res.statusCode, 200)
    assert.equal(await res.body.text(), 'ok')
  })

  async function readAll(path: string): Promise<string> {
    const res = await request(`${gw.url()}${path}`, { signal: AbortSignal.timeout(5000) })
    return res.body.text()
  }
})

/**
 * An upstream that answers by path: `*\/head` and `no-head` never answer, `mid-body` and
 * `stall` send a head and a first chunk then wait, `die-*` send a first part and then
 * drop the connection, `ok` answers. Records whether each request was closed early.
 */
function holdingHandler(held: Map<string, { res: ServerResponse; closedEarly: boolean }>) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? ''
    const entry = { res, closedEarly: false }
    held.set(path, entry)
    res.once('close', () => {
      entry.closedEarly = !res.writableFinished
    })
    if (path.endsWith('/ok')) {
      res.end('ok')
    } else if (path.endsWith('/die-chunked') || path.endsWith('/die-length')) {
      if (path.endsWith('/die-length')) res.setHeader('content-length', 100)
      res.writeHead(200)
      res.write('first part', () => req.socket.destroy())
    } else if (path.endsWith('/mid-body') || path.endsWith('/stall')) {
      res.writeHead(200)
      res.write('first part')
    }
  }
}

interface RawUpstream {
  port: number
  close(): Promise<void>
}

/** A TCP server that hands the first bytes of each connection to `onHead`: for answers HTTP cannot make. */
async function startRawUpstream(onHead: (socket: Socket, head: string) => void): Promise<RawUpstream> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.once('data', (chunk) => onHead(socket, chunk.toString('latin1')))
  })
  const port = await listen(server)
  return {
    port,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

interface Blackhole {
  port: number
  /** Opens connections until the accept queue is full, so further SYNs are dropped. */
  fill(): Promise<void>
  close(): Promise<void>
}

/**
 * A listening socket that never accepts: its loop is held in a worker thread
 * blocked on Atomics.wait, with a backlog of 1. Once its accept queue is full the
 * kernel drops new SYNs (tcp_abort_on_overflow = 0, the default), so a
 * connect neither succeeds nor fails: the connect timeout is what ends it.
 */
async function startBlackhole(): Promise<Blackhole> {
  const wake = new Int32Array(new SharedArrayBuffer(4))
  const worker = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads')
    const server = require('node:net').createServer()
    server.listen({ port: 0, host: '127.0.0.1', backlog: ${BACKLOG} }, () => {
      parentPort.postMessage(server.address().port)
      Atomics.wait(workerData, 0, 0)
      server.close()
    })`,
    { eval: true, workerData: wake },
  )
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve)
    worker.once('error', reject)
  })
  const fillers: Socket[] = []
  return {
    port,
    async fill() {
      for (let i = 0; i < 8 && !(await acceptQueueFull(port)); i++) {
        const socket = connect(port, '127.0.0.1')
        socket.on('error', () => {})
        fillers.push(socket)
        await eventually(async () => (await acceptQueueFull(port)) || socket.readyState === 'open')
      }
      assert.equal(await acceptQueueFull(port), true, 'the blackhole accept queue could not be filled')
    },
    async close() {
      for (const socket of fillers) socket.destroy()
      Atomics.store(wake, 0, 1)
      Atomics.notify(wake, 0)
      await worker.terminate()
    },
  }
}

/**
 * Whether the listener on `port` has its accept queue full. /proc/net/tcp shows a LISTEN
 * socket's accept queue length as rx_queue; the kernel drops SYNs once the queue holds
 * more than the backlog (sk_acceptq_is_full).
 */
async function acceptQueueFull(port: number): Promise<boolean> {
  const table = await readFile('/proc/net/tcp', 'latin1')
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`
  for (const line of table.split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (fields[1] !== local || fields[3] !== '0A') continue
    return Number.parseInt(fields[4].split(':')[1], 16) > BACKLOG
  }
  return false
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

/** A port nothing listens on: bound once, then released. */
async function freePort(): Promise<number> {
  const server = createServer()
  const port = await listen(server)
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}
