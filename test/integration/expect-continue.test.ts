/**
 * `Expect: 100-continue` (RFC 9110 §10.1.1): the client hears `100 Continue`
 * only when its body is about to be forwarded; a request refused before that
 * (body announced too large, no route) gets its final status without 100 and
 * the body is never read. Other expectations get 417.
 */
import assert from 'node:assert/strict'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { bodyOf, openRaw, rawRequest, statusOf } from '../helpers/raw.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n'

describe('Expect: 100-continue', () => {
  let upstream: Upstream
  let gw: TestGateway
  before(async () => {
    upstream = await startUpstream('continue', (req: IncomingMessage, res) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        const body = JSON.stringify({
          url: req.url,
          body: Buffer.concat(chunks).toString(),
          expect: req.headers.expect,
        })
        res.writeHead(201, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      })
    })
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
    limits:
      maxBodySize: 1kb
services:
  app:
    targets: [${upstream.url}]
routes:
  - path: /upload
    service: app
  - path: /big
    service: app
    maxBodySize: 4kb
`)
  })
  after(async () => {
    await gw.stop()
    await upstream.close()
  })

  it('sends 100 Continue, then forwards the body and relays the answer (raw socket)', async () => {
    const conn = await openRaw(gw.port())
    try {
      conn.write('POST /upload/raw HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n')
      await eventually(() => conn.text().startsWith(CONTINUE), { timeout: 10_000 })
      // Nothing but the 100 before the body is sent.
      assert.equal(conn.text(), CONTINUE)
      conn.write('hello world')
      await eventually(() => bodyOf(conn.text().slice(CONTINUE.length)).endsWith('}'), { timeout: 10_000 })
      const final = conn.text().slice(CONTINUE.length)
      assert.equal(statusOf(final), 201)
      // Expect is answered here, not forwarded (undici would not wait for a 100 anyway).
      assert.deepEqual(JSON.parse(bodyOf(final)), { url: '/upload/raw', body: 'hello world' })
    } finally {
      conn.destroy()
    }
  })

  it("works with node:http's expect handling ('continue' event)", async () => {
    const result = await new Promise<{ status: number; body: string; continued: boolean }>(
      (resolve, reject) => {
        let continued = false
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: gw.port(),
            path: '/upload/node',
            method: 'PUT',
            headers: { expect: '100-continue', 'content-type': 'text/plain', 'content-length': 7 },
          },
          (res) => {
            let body = ''
            res.setEncoding('utf8')
            res.on('data', (chunk: string) => {
              body += chunk
            })
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body, continued }))
          },
        )
        req.on('continue', () => {
          continued = true
          req.end('payload')
        })
        req.once('error', reject)
      },
    )
    assert.equal(result.continued, true)
    assert.equal(result.status, 201)
    assert.deepEqual(JSON.parse(result.body), { url: '/upload/node', body: 'payload' })
  })

  it('sends 100 for a chunked body and counts it as it streams', async () => {
    const conn = await openRaw(gw.port())
    try {
      conn.write(
        'POST /upload/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n',
      )
      await eventually(() => conn.text() === CONTINUE, { timeout: 10_000 })
      conn.write('5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n')
      await eventually(() => bodyOf(conn.text().slice(CONTINUE.length)).endsWith('}'), { timeout: 10_000 })
      const final = conn.text().slice(CONTINUE.length)
      assert.equal(statusOf(final), 201)
      assert.equal(JSON.parse(bodyOf(final)).body, 'hello world')
    } finally {
      conn.destroy()
    }
  })

  it('answers 413 without 100 to a body announced bigger than the limit', async () => {
    const seen = upstream.requests.length
    const result = await rawRequest(
      gw.port(),
      'POST /upload/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n',
    )
    assert.equal(statusOf(result.text), 413, result.text)
    assert.doesNotMatch(result.text, /100 Continue/)
    assert.equal(JSON.parse(bodyOf(result.text)).code, 'GH_PAYLOAD_TOO_LARGE')
    assert.equal(result.closed, true, 'the body was never read, so the connection cannot be reused')
    assert.equal(upstream.requests.length, seen)
  })

  it("uses the route's maxBodySize to decide, not only the listener's", async () => {
    const conn = await openRaw(gw.port())
    try {
      // 2000 bytes: over the listener's 1kb, under the route's 4kb.
      conn.write('POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n')
      await eventually(() => conn.text() === CONTINUE, { timeout: 10_000 })
      conn.write('b'.repeat(2000))
      await eventually(() => bodyOf(conn.text().slice(CONTINUE.length)).endsWith('}'), { timeout: 10_000 })
      assert.equal(statusOf(conn.text().slice(CONTINUE.length)), 201)
    } finally {
      conn.destroy()
    }
  })

  it('answers a request that no route matches without 100', async () => {
    const result = await rawRequest(
      gw.port(),
      'POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n',
    )
    assert.equal(statusOf(result.text), 404, result.text)
    assert.doesNotMatch(result.text, /100 Continue/)
    assert.equal(JSON.parse(bodyOf(result.text)).code, 'GH_ROUTE_NOT_FOUND')
    assert.equal(result.closed, true)
  })

  it('answers 417 problem+json to an expectation other than 100-continue', async () => {
    const seen = upstream.requests.length
    const result = await rawRequest(
      gw.port(),
      'POST /upload/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 200-ok\r\n\r\nhi',
    )
    assert.equal(statusOf(result.text), 417, result.text)
    assert.match(result.text, /\r\ncontent-type: application\/problem\+json\r\n/i)
    assert.equal(JSON.parse(bodyOf(result.text)).code, 'GH_EXPECTATION_FAILED')
    assert.equal(upstream.requests.length, seen)
  })
})
