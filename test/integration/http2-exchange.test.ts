/**
 * What an HTTP/2 client sees of whole exchanges through a TLS listener: HEAD,
 * 204 and 304 without a body, trailers, a response cut by its upstream or
 * cancelled by the client, large bodies both ways under flow control,
 * 100-continue, the peer address upstream, many concurrent streams, answers
 * given before the request body was read, CONNECT, and response header names.
 * These pin the client-visible behaviour whatever serves the streams (the
 * compatibility layer or the core stream API).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  type ClientHttp2Session,
  constants as h2,
  connect as http2Connect,
  type OutgoingHttpHeaders,
  sensitiveHeaders,
} from 'node:http2'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { AccessLogLine } from '../../src/observability/access-log.ts'
import { makeCertificates, type TestPki } from '../helpers/certs.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import {
  answerSeen,
  assertClean,
  assertEchoed,
  collect,
  digest,
  type H2Outcome,
  h2Request,
  received,
  type Seen,
} from '../helpers/http2.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const KIB = 1024
const MIB = 1024 * KIB

function problemCode(outcome: H2Outcome): string {
  assert.equal(outcome.headers['content-type'], 'application/problem+json')
  return (JSON.parse(outcome.body.toString()) as { code: string }).code
}

/** Observations the upstream makes, for the tests to wait on. */
interface UpstreamLog {
  /** Paths whose response closed (finished or cut). */
  closed: string[]
  /** Bytes of /app/large handed to res.write() so far. */
  largeWritten: number
  /** /app/large waits for 'drain' right now. */
  largeBlocked: boolean
}

/** The upstream's routes by path; anything else is echoed as JSON (Seen). /app/large answers `large`. */
function upstreamHandler(log: UpstreamLog, large: Buffer) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '').split('?')[0]
    res.once('close', () => log.closed.push(path))
    if (path === '/app/early') {
      // Answers at once, before the request body has arrived (as nginx does for a static file).
      res.writeHead(200, { 'content-length': '5' })
      res.end('early')
      req.resume()
      return
    }
    received(req, (seen) => {
      switch (path) {
        case '/app/head':
          res.writeHead(200, { 'content-length': '1234', 'content-type': 'text/plain' })
          res.end()
          return
        case '/app/status/204':
          // RFC 9110 §8.6 forbids Content-Length on a 204: the gateway must not relay this one.
          res.writeHead(204, { 'content-length': '0', 'x-status': '204' })
          res.end()
          return
        case '/app/status/304':
          res.writeHead(304, { etag: '"v1"', 'x-status': '304' })
          res.end()
          return
        case '/app/trailers':
          res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
          res.write('hello ')
          res.addTrailers({ 'x-checksum': 'abc' })
          res.end('world')
          return
        case '/app/cut':
          // Chunked (no Content-Length), then the connection dies mid-body.
          res.writeHead(200, { 'content-type': 'text/plain' })
          res.write('partial', () => res.socket?.destroy())
          return
        case '/app/endless':
          endless(res)
          return
        case '/app/large':
          writeLarge(res, large, log)
          return
        case '/app/cased':
          res.setHeader('X-Mixed-Case', 'v')
          res.setHeader('Set-Cookie', ['a=1; Path=/', 'b=2'])
          res.writeHead(200, { 'content-type': 'text/plain' })
          res.end('cased')
          return
      }
      answerSeen(res, seen)
    })
  }
}

/** A chunk every 20 ms until the response closes. */
function endless(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/plain' })
  res.write('tick\n')
  const timer = setInterval(() => res.write('tick\n'), 20)
  res.once('close', () => clearInterval(timer))
}

/** `body` in 64 KiB writes, waiting for 'drain' whenever write() says the buffer is full. */
function writeLarge(res: ServerResponse, body: Buffer, log: UpstreamLog): void {
  log.largeWritten = 0
  log.largeBlocked = false
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) })
  const next = () => {
    while (log.largeWritten < body.length) {
      const chunk = body.subarray(log.largeWritten, log.largeWritten + 64 * KIB)
      log.largeWritten += chunk.length
      if (log.largeWritten === body.length) {
        res.end(chunk)
        return
      }
      if (!res.write(chunk)) {
        log.largeBlocked = true
        res.once('drain', () => {
          log.largeBlocked = false
          next()
        })
        return
      }
    }
  }
  next()
}

describe('HTTP/2 exchanges through a TLS listener', () => {
  let pki: TestPki
  let upstream: Upstream
  let gw: TestGateway
  let session: ClientHttp2Session
  const log: UpstreamLog = { closed: [], largeWritten: 0, largeBlocked: false }
  let large: Buffer
  const AUTHORITY = 'api.example.com'
  const get = (path: string, extra: OutgoingHttpHeaders = {}) =>
    h2Request(session, { ':path': path, ':authority': AUTHORITY, ...extra })
  /** The session still serves a plain GET. */
  const assertSessionWorks = async () => {
    const res = await get('/app/still-there')
    assertClean(res)
    assert.equal(res.headers[':status'], 200)
    assert.equal((JSON.parse(res.body.toString()) as Seen).url, '/app/still-there')
  }

  before(async () => {
    pki = await makeCertificates([AUTHORITY])
    large = randomBytes(4 * MIB)
    upstream = await startUpstream('h2-exchange', upstreamHandler(log, large))
    const cert = pki.certs[AUTHORITY]
    // Only /app has routes: /nowhere is a 404. The listener takes 64kb bodies; two routes take more.
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
    limits:
      maxBodySize: 64kb
    tls:
      certificates:
        - {cert: ${cert.certFile}, key: ${cert.keyFile}}
services:
  app:
    targets: [${upstream.url}]
routes:
  - path: /app
    service: app
  - path: /app/upload
    service: app
    maxBodySize: 8mb
  - path: /app/ok
    respond: {status: 200, body: ok}
    maxBodySize: 2mb
accessLog: {file: ${join(pki.dir, 'access.log')}}
`)
    session = http2Connect(`https://127.0.0.1:${gw.port()}`, { ca: pki.ca.cert, servername: AUTHORITY })
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve())
      session.once('error', reject)
    })
  })
  after(async () => {
    session?.destroy()
    await gw?.stop()
    await upstream?.close()
    await pki?.remove()
  })

  it('answers HEAD with the head only: the upstream’s content-length, no DATA; 404 problem without body', async () => {
    const head = await get('/app/head', { ':method': 'HEAD' })
    assertClean(head)
    assert.equal(head.headers[':status'], 200)
    assert.equal(head.headers['content-length'], '1234')
    assert.equal(head.body.length, 0)
    assert.equal(upstream.requests.at(-1)?.method, 'HEAD')

    const missing = await get('/nowhere', { ':method': 'HEAD' })
    assertClean(missing)
    assert.equal(missing.headers[':status'], 404)
    assert.equal(missing.headers['content-type'], 'application/problem+json')
    assert.equal(missing.body.length, 0)
  })

  it('relays 204 and 304 without a body, and without content-length on the 204', async () => {
    const noContent = await get('/app/status/204')
    assertClean(noContent)
    assert.equal(noContent.headers[':status'], 204)
    assert.equal(noContent.headers['x-status'], '204')
    assert.equal(noContent.headers['content-length'], undefined)
    assert.equal(noContent.body.length, 0)

    const notModified = await get('/app/status/304', { 'if-none-match': '"v1"' })
    assertClean(notModified)
    assert.equal(notModified.headers[':status'], 304)
    assert.equal(notModified.headers.etag, '"v1"')
    assert.equal(notModified.body.length, 0)
  })

  it('relays trailer fields of a chunked upstream answer as an HTTP/2 trailer block', async () => {
    const res = await get('/app/trailers', { te: 'trailers' })
    assertClean(res)
    assert.equal(res.headers[':status'], 200)
    assert.equal(res.body.toString(), 'hello world')
    assert.deepEqual(
      res.trailers && { 'x-checksum': res.trailers['x-checksum'] },
      { 'x-checksum': 'abc' },
      'trailers',
    )
    // Trailer is hop-by-hop here: HTTP/2 announces no trailers in the head.
    assert.equal(res.headers.trailer, undefined)
  })

  it('resets a stream whose upstream died mid-body with INTERNAL_ERROR, and keeps the session', async () => {
    const cut = await get('/app/cut')
    assert.equal(cut.headers[':status'], 200)
    assert.ok('partial'.startsWith(cut.body.toString()), cut.body.toString())
    // The response is chunked upstream, so the client cannot count bytes: only the reset code
    // tells it the response is incomplete (RFC 9113 §8.1 keeps NO_ERROR for complete ones).
    assert.equal(cut.rstCode, h2.NGHTTP2_INTERNAL_ERROR)
    await assertSessionWorks()
  })

  it('cancels the upstream exchange when the client resets its stream, whatever the code', async () => {
    // CANCEL is the usual one; any other code must not take the gateway down either.
    for (const code of [h2.NGHTTP2_CANCEL, h2.NGHTTP2_INTERNAL_ERROR, h2.NGHTTP2_PROTOCOL_ERROR]) {
      const cancelled = log.closed.filter((path) => path === '/app/endless').length
      const stream = session.request({ ':path': '/app/endless', ':authority': AUTHORITY })
      const outcome = collect(stream)
      const status = await new Promise<number>((resolve) =>
        stream.once('response', (headers) => resolve(Number(headers[':status']))),
      )
      assert.equal(status, 200)
      // Some of the body streams before the reset.
      await new Promise((resolve) => stream.once('data', resolve))
      stream.close(code)
      // Node's client emits 'end' after its own reset too: the reset code is what tells.
      assert.equal((await outcome).rstCode, code)
      await eventually(() => log.closed.filter((path) => path === '/app/endless').length === cancelled + 1, {
        timeout: 10_000,
      })
      await assertSessionWorks()
    }
  })

  it('brings a 4 MiB response intact through a client that stops reading for a while', async () => {
    const stream = session.request({ ':path': '/app/large', ':authority': AUTHORITY })
    const outcome = collect(stream)
    stream.pause()
    // Paused until the upstream is held back (backpressure reached it) or has written 1 MiB into buffers.
    await eventually(() => log.largeBlocked || log.largeWritten >= MIB, { timeout: 10_000 })
    stream.resume()
    const res = await outcome
    assertClean(res)
    assert.equal(res.headers[':status'], 200)
    assert.equal(res.headers['content-length'], String(large.length))
    assert.equal(res.body.length, large.length)
    assert.equal(digest(res.body), digest(large))
  })

  it('brings a 4 MiB upload with content-length intact to the upstream', async () => {
    const body = randomBytes(4 * MIB)
    const res = await h2Request(
      session,
      {
        ':method': 'POST',
        ':path': '/app/upload/big',
        ':authority': AUTHORITY,
        'content-length': body.length,
      },
      body,
    )
    assertClean(res)
    assertEchoed(res, 'POST', body)
  })

  it('sends 100 Continue before reading a body, and none before a 413 (RFC 9110 §10.1.1)', async () => {
    const body = randomBytes(10 * KIB)
    const stream = session.request(
      {
        ':method': 'POST',
        ':path': '/app/continue',
        ':authority': AUTHORITY,
        'content-length': body.length,
        expect: '100-continue',
      },
      { endStream: false },
    )
    const outcome = collect(stream)
    await new Promise((resolve) => stream.once('continue', resolve))
    stream.end(body)
    const res = await outcome
    assertClean(res)
    assert.equal(res.continuedBeforeFinal, true)
    assert.equal(res.headers[':status'], 200)
    const seen = JSON.parse(res.body.toString()) as Seen
    assert.equal(seen.bytes, body.length)
    assert.equal(seen.sha256, digest(body))
    // Expect is answered by the gateway, not forwarded.
    assert.equal(seen.headers.expect, undefined)

    const before = upstream.requests.length
    const tooLarge = session.request(
      {
        ':method': 'POST',
        ':path': '/app/continue',
        ':authority': AUTHORITY,
        'content-length': 100 * KIB,
        expect: '100-continue',
      },
      { endStream: false },
    )
    const refused = await collect(tooLarge)
    assert.equal(refused.error, null)
    assert.equal(refused.ended, true)
    assert.equal(refused.headers[':status'], 413)
    assert.equal(refused.continued, false, 'no 100 Continue before a refusal')
    assert.equal(problemCode(refused), 'GH_PAYLOAD_TOO_LARGE')
    assert.equal(upstream.requests.length, before)
    await assertSessionWorks()
  })

  it('tells the upstream the peer address (X-Forwarded-For, Forwarded for=) of an h2 client', async () => {
    const res = await get('/app/peer', { 'x-forwarded-for': '203.0.113.9', forwarded: 'for=203.0.113.9' })
    assertClean(res)
    const seen = JSON.parse(res.body.toString()) as Seen
    // The peer is not a trusted proxy: what it claims is dropped, its own address is used.
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
    assert.equal(seen.headers.forwarded, `for=127.0.0.1;proto=https;host="${AUTHORITY}"`)
    assert.equal(seen.headers['x-forwarded-proto'], 'https')
  })

  it('serves 50 concurrent streams on one session, each with its own answer and request id', async () => {
    const paths = Array.from({ length: 50 }, (_, i) => `/app/concurrent/${i}?n=${i}`)
    const answers = await Promise.all(paths.map((path) => get(path)))
    const ids = new Set<string>()
    answers.forEach((res, i) => {
      assertClean(res)
      assert.equal(res.headers[':status'], 200)
      const seen = JSON.parse(res.body.toString()) as Seen
      assert.equal(seen.url, paths[i])
      const id = res.headers['x-request-id'] as string
      assert.ok(id, 'x-request-id')
      assert.equal(seen.headers['x-request-id'], id)
      ids.add(id)
    })
    assert.equal(ids.size, paths.length)
  })

  it('answers before reading a body (404, respond route) and keeps the session', async () => {
    const before = upstream.requests.length
    const streamed = await h2Request(
      session,
      { ':method': 'POST', ':path': '/nowhere', ':authority': AUTHORITY },
      randomBytes(MIB),
    )
    assert.equal(streamed.headers[':status'], 404)
    assert.equal(streamed.ended, true)
    assert.equal(problemCode(streamed), 'GH_ROUTE_NOT_FOUND')
    assert.equal(upstream.requests.length, before)
    await assertSessionWorks()

    const ok = await h2Request(
      session,
      { ':method': 'POST', ':path': '/app/ok', ':authority': AUTHORITY, 'content-length': MIB },
      randomBytes(MIB),
    )
    assert.equal(ok.headers[':status'], 200)
    assert.equal(ok.ended, true)
    assert.equal(ok.body.toString(), 'ok')
    await assertSessionWorks()
  })

  it('refuses CONNECT with a 4xx and keeps the session (RFC 9113 §8.5)', async () => {
    const before = upstream.requests.length
    const res = await collect(session.request({ ':method': 'CONNECT', ':authority': 'example.com:443' }))
    const status = Number(res.headers[':status'])
    assert.ok(status >= 400 && status < 500, `status ${status}`)
    assert.equal(res.headers['content-type'], 'application/problem+json')
    assert.equal(upstream.requests.length, before)
    await assertSessionWorks()
  })

  it('logs an exchange as aborted only when its response was cut', async () => {
    const accessLine = async (id: string) => {
      let found: AccessLogLine | undefined
      await eventually(
        async () => {
          const text = await readFile(join(pki.dir, 'access.log'), 'utf8').catch(() => '')
          const lines = text.split('\n').filter((line) => line.includes(id))
          found = lines.length > 0 ? (JSON.parse(lines[0]) as AccessLogLine) : undefined
          return found !== undefined
        },
        { timeout: 10_000 },
      )
      return found!
    }
    // A POST read to its end: Node closes the stream before its 'finish' here.
    const post = await h2Request(
      session,
      { ':method': 'POST', ':path': '/app/logged', ':authority': AUTHORITY },
      Buffer.from('hello'),
    )
    // Answered before its body arrived (the body is then read and dropped, or stopped).
    const early = await h2Request(
      session,
      { ':method': 'POST', ':path': '/app/early', ':authority': AUTHORITY, 'content-length': 5 },
      Buffer.from('hello'),
    )
    const got = await get('/app/logged')
    for (const res of [post, early, got]) {
      assertClean(res)
      const line = await accessLine(String(res.headers['x-request-id']))
      assert.equal(line.status, 200)
      assert.equal(line.aborted, undefined, `${line.method} logged as aborted`)
    }
    // The client resets mid-body: that one was cut.
    const stream = session.request({ ':path': '/app/endless', ':authority': AUTHORITY })
    const outcome = collect(stream)
    const id = await new Promise<string>((resolve) =>
      stream.once('response', (headers) => resolve(String(headers['x-request-id']))),
    )
    await new Promise((resolve) => stream.once('data', resolve))
    stream.close(h2.NGHTTP2_CANCEL)
    await outcome
    const cutLine = await accessLine(id)
    assert.equal(cutLine.aborted, true)
  })

  it('sends response field names lower-case (RFC 9113 §8.2.1) and each Set-Cookie as its own field', async () => {
    const res = await get('/app/cased')
    assertClean(res)
    assert.equal(res.headers[':status'], 200)
    assert.equal(res.headers['x-mixed-case'], 'v')
    assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/', 'b=2'])
    for (const name of Object.keys(res.headers)) assert.equal(name, name.toLowerCase())
    assert.equal(res.body.toString(), 'cased')
  })

  it('sends the request id and Set-Cookie as never-indexed literals, the rest through HPACK (RFC 7541 §7.1.3)', async () => {
    const res = await get('/app/cased')
    // Node's client lists the fields that arrived never-indexed under http2.sensitiveHeaders.
    const neverIndexed = (res.headers as Record<symbol, string[]>)[sensitiveHeaders]
    assert.deepEqual([...neverIndexed].sort(), ['set-cookie', 'set-cookie', 'x-request-id'])
  })
})
