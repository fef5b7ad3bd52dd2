/**
 * HTTP/2 by ALPN beside HTTP/1.1 on one TLS port: both kinds of client get
 * proxied answers from the same listener, request bodies reach the upstream
 * intact, pseudo-headers and hop-by-hop fields stay on their hop, and with
 * `tls.http2: false` only http/1.1 is offered.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { type ClientHttp2Session, connect as http2Connect, type OutgoingHttpHeaders } from 'node:http2'
import { request as httpsRequest } from 'node:https'
import { after, before, describe, it } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import { Agent, request } from 'undici'
import { makeCertificates, type TestPki } from '../helpers/certs.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import {
  answerSeen,
  assertEchoed,
  collect,
  digest,
  h2Request,
  received,
  type Seen,
} from '../helpers/http2.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/** Answers what it received, body digest included; /hop-by-hop answers with connection-specific fields. */
function echo(req: IncomingMessage, res: ServerResponse): void {
  received(req, (seen) => {
    if (req.url === '/hop-by-hop') {
      res.writeHead(200, {
        connection: 'x-conn-named, keep-alive',
        'keep-alive': 'timeout=5',
        'proxy-connection': 'keep-alive',
        upgrade: 'h2c',
        'x-conn-named': 'dropped',
        'x-kept': 'kept',
      })
      // No Content-Length: the upstream's answer is chunked (Transfer-Encoding is hop-by-hop too).
      res.write('hop-')
      res.end('by-hop')
      return
    }
    answerSeen(res, seen)
  })
}

describe('HTTP/2 and HTTP/1.1 on one TLS listener', () => {
  let pki: TestPki
  let upstream: Upstream
  let gw: TestGateway
  let session: ClientHttp2Session

  before(async () => {
    pki = await makeCertificates(['api.example.com'])
    upstream = await startUpstream('h2-upstream', echo)
    const cert = pki.certs['api.example.com']
    gw = await startGateway(`
listeners:
  - name: both
    port: 0
    host: 127.0.0.1
    limits:
      maxBodySize: 256kb
    tls:
      certificates:
        - {cert: ${cert.certFile}, key: ${cert.keyFile}}
  - name: short-idle
    port: 0
    host: 127.0.0.1
    limits:
      keepAliveTimeout: 1s
    tls:
      certificates:
        - {cert: ${cert.certFile}, key: ${cert.keyFile}}
  - name: slow-body
    port: 0
    host: 127.0.0.1
    limits:
      headersTimeout: 300ms
      requestTimeout: 600ms
    tls:
      certificates:
        - {cert: ${cert.certFile}, key: ${cert.keyFile}}
  - name: h1-only
    port: 0
    host: 127.0.0.1
    tls:
      http2: false
      certificates:
        - {cert: ${cert.certFile}, key: ${cert.keyFile}}
services:
  app:
    targets: [${upstream.url}]
routes:
  - path: /
    service: app
`)
    session = http2Connect(`https://127.0.0.1:${gw.port('both')}`, {
      ca: pki.ca.cert,
      servername: 'api.example.com',
    })
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve())
      session.once('error', reject)
    })
  })
  after(async () => {
    session?.destroy()
    await gw.stop()
    await upstream.close()
    await pki.remove()
  })

  it('negotiates h2 by ALPN and proxies a GET without a body', async () => {
    assert.equal(session.alpnProtocol, 'h2')
    const res = await h2Request(session, { ':path': '/items?x=1', ':authority': 'api.example.com' })
    assert.equal(res.headers[':status'], 200)
    const seen = JSON.parse(res.body.toString()) as Seen
    assert.equal(seen.method, 'GET')
    assert.equal(seen.url, '/items?x=1')
    assert.equal(seen.bytes, 0)
    // END_STREAM on HEADERS: no body, so no framing is invented for the upstream.
    assert.equal(seen.headers['transfer-encoding'], undefined)
    assert.equal(seen.headers['content-length'], undefined)
    // Pseudo-headers stay on the HTTP/2 hop; the upstream gets a Host and forwarding headers.
    assert.deepEqual(
      Object.keys(seen.headers).filter((name) => name.startsWith(':')),
      [],
    )
    assert.equal(seen.headers.host, new URL(upstream.url).host)
    assert.equal(seen.headers['x-forwarded-proto'], 'https')
    assert.equal(seen.headers['x-forwarded-host'], 'api.example.com')
    assert.equal(res.headers['x-request-id'], seen.headers['x-request-id'])
  })

  it('brings a POST body over h2 to the upstream intact, with and without content-length', async () => {
    const body = randomBytes(100_000)
    for (const withLength of [true, false]) {
      const headers: OutgoingHttpHeaders = {
        ':method': 'POST',
        ':path': '/upload',
        'content-type': 'application/octet-stream',
      }
      if (withLength) headers['content-length'] = body.length
      const res = await h2Request(session, headers, body)
      assertEchoed(res, 'POST', body)
    }
  })

  it('joins HTTP/2 cookie crumbs into one Cookie field for the HTTP/1.1 upstream', async () => {
    const res = await h2Request(session, { ':path': '/cookies', cookie: ['a=1', 'b=2'] })
    const seen = JSON.parse(res.body.toString()) as Seen
    assert.equal(seen.headers.cookie, 'a=1; b=2')
    // One field on the wire: Node would have joined two lines with '; ' too, so count the raw lines.
    const raw = upstream.requests
      .at(-1)!
      .rawHeaders.filter((_, i, all) => i % 2 === 0 && all[i].toLowerCase() === 'cookie')
    assert.equal(raw.length, 1)
  })

  it('never puts hop-by-hop fields on an h2 response', async () => {
    const res = await h2Request(session, { ':path': '/hop-by-hop' })
    assert.equal(res.headers[':status'], 200)
    assert.equal(res.body.toString(), 'hop-by-hop')
    assert.equal(res.headers['x-kept'], 'kept')
    for (const name of [
      'connection',
      'keep-alive',
      'proxy-connection',
      'upgrade',
      'transfer-encoding',
      'x-conn-named',
    ])
      assert.equal(res.headers[name], undefined, name)
    // The session survived (Node throws on connection-specific fields in HTTP/2).
    const again = await h2Request(session, { ':path': '/after' })
    assert.equal(again.headers[':status'], 200)
  })

  it('answers 413 problem+json over h2, from content-length and while counting DATA', async () => {
    const big = randomBytes(300 * 1024)
    for (const withLength of [true, false]) {
      const headers: OutgoingHttpHeaders = { ':method': 'POST', ':path': '/too-big' }
      if (withLength) headers['content-length'] = big.length
      // Sent whole at once; a reset after the answer shows in the outcome, not as a failure here.
      const stream = session.request(headers)
      const answer = collect(stream)
      stream.end(big)
      const res = await answer
      assert.equal(res.headers[':status'], 413)
      assert.equal(res.headers['content-type'], 'application/problem+json')
      assert.equal(res.headers.connection, undefined)
      assert.equal((JSON.parse(res.body.toString()) as { code: string }).code, 'GH_PAYLOAD_TOO_LARGE')
    }
  })

  it('answers 431 problem+json over h2 to too many or too large header fields', async () => {
    const seen = upstream.requests.length
    // Defaults: 100 fields (pseudo-headers not counted), 16kb of header list.
    const many: OutgoingHttpHeaders = { ':path': '/many' }
    for (let i = 0; i < 101; i++) many[`x-field-${i}`] = 'v'
    const large: OutgoingHttpHeaders = { ':path': '/large', 'x-large': 'l'.repeat(17 * 1024) }
    for (const headers of [many, large]) {
      const res = await h2Request(session, headers)
      assert.equal(res.headers[':status'], 431)
      assert.equal(res.headers['content-type'], 'application/problem+json')
      assert.equal((JSON.parse(res.body.toString()) as { code: string }).code, 'GH_HEADERS_TOO_LARGE')
    }
    const exactly: OutgoingHttpHeaders = { ':path': '/hundred' }
    for (let i = 0; i < 100; i++) exactly[`x-field-${i}`] = 'v'
    assert.equal((await h2Request(session, exactly)).headers[':status'], 200)
    assert.equal(upstream.requests.length, seen + 1)
  })

  it('serves HTTP/1.1 clients on the same port (undici and node:https)', async () => {
    const dispatcher = new Agent({ connect: { ca: pki.ca.cert, servername: 'api.example.com' } })
    try {
      const body = randomBytes(50_000)
      const res = await request(`https://127.0.0.1:${gw.port('both')}/h1`, {
        method: 'POST',
        body,
        dispatcher,
      })
      assert.equal(res.statusCode, 200)
      const seen = (await res.body.json()) as Seen
      assert.equal(seen.sha256, digest(body))
      assert.equal(seen.headers['x-forwarded-proto'], 'https')
    } finally {
      await dispatcher.close()
    }
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: gw.port('both'),
          path: '/node-https',
          servername: 'api.example.com',
          ca: pki.ca.cert,
          agent: false,
        },
        (res) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode ?? 0))
        },
      )
      req.once('error', reject)
      req.end()
    })
    assert.equal(status, 200)
  })

  it('offers both protocols by ALPN, or only http/1.1 with tls.http2: false', async () => {
    const alpn = (port: number, offered: string[]) =>
      new Promise<string | false>((resolve, reject) => {
        const socket = tlsConnect(
          { port, host: '127.0.0.1', servername: 'api.example.com', ca: pki.ca.cert, ALPNProtocols: offered },
          () => {
            resolve(socket.alpnProtocol ?? false)
            socket.end()
          },
        )
        socket.once('error', reject)
      })
    assert.equal(await alpn(gw.port('both'), ['h2', 'http/1.1']), 'h2')
    assert.equal(await alpn(gw.port('both'), ['http/1.1']), 'http/1.1')
    assert.equal(await alpn(gw.port('h1-only'), ['h2', 'http/1.1']), 'http/1.1')
    // A client that speaks only h2 is refused in the handshake (no_application_protocol alert).
    await assert.rejects(alpn(gw.port('h1-only'), ['h2']), {
      code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
    })
  })

  it('answers 408 to an HTTP/2 body that does not arrive within requestTimeout', async () => {
    const slow = http2Connect(`https://127.0.0.1:${gw.port('slow-body')}`, {
      ca: pki.ca.cert,
      servername: 'api.example.com',
    })
    slow.on('error', () => {})
    try {
      const stream = slow.request({ ':method': 'POST', ':path': '/upload' })
      stream.write('part of a body that never ends')
      const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        let status = 0
        const chunks: Buffer[] = []
        stream.on('response', (headers) => {
          status = Number(headers[':status'])
        })
        stream.on('data', (chunk: Buffer) => chunks.push(chunk))
        stream.on('close', () => resolve({ status, body: Buffer.concat(chunks).toString() }))
        stream.on('error', reject)
      })
      assert.equal(reply.status, 408)
      assert.equal((JSON.parse(reply.body) as { code: string }).code, 'GH_REQUEST_TIMEOUT')
    } finally {
      slow.destroy()
    }
  })

  it('closes an HTTP/2 session left idle for keepAliveTimeout with GOAWAY', async () => {
    const idle = http2Connect(`https://127.0.0.1:${gw.port('short-idle')}`, {
      ca: pki.ca.cert,
      servername: 'api.example.com',
    })
    let goaway = false
    idle.on('goaway', () => {
      goaway = true
    })
    idle.on('error', () => {})
    try {
      const res = await h2Request(idle, { ':path': '/once' })
      assert.equal(res.headers[':status'], 200)
      await eventually(() => idle.closed || idle.destroyed, { timeout: 15_000 })
      assert.equal(goaway, true)
    } finally {
      idle.destroy()
    }
  })
})
