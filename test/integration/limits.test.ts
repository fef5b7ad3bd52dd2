/**
 * Listener limits over real sockets: sizes (431, 414, 413), header count
 * (431), timeouts (408, idle keep-alive close) and the connection cap. Every
 * refusal is problem+json with its stable code.
 */
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { bodyOf, openRaw, type RawConnection, rawRequest, statusOf } from '../helpers/raw.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

interface Problem {
  code: string
  status: number
  type: string
}

function problemIn(text: string, status: number, code: string): void {
  assert.equal(statusOf(text), status, text)
  assert.match(text, /\r\ncontent-type: application\/problem\+json\r\n/i)
  const problem = JSON.parse(bodyOf(text)) as Problem
  assert.equal(problem.code, code)
  assert.equal(problem.status, status)
}

/** Requests in HTTP/1.1 wire form, so each test controls exactly what is sent. */
function head(path: string, fields: string[] = []): string {
  return `GET ${path} HTTP/1.1\r\nHost: x\r\n${fields.map((f) => `${f}\r\n`).join('')}\r\n`
}

/** Counts one more response in `text` each time a full `HTTP/1.1 200` head arrives. */
function responses(text: string): number {
  return text.split('HTTP/1.1 200 OK\r\n').length - 1
}

describe('listener limits', () => {
  let upstream: Upstream
  let gw: TestGateway
  /** Whether each upstream request's body arrived complete, by path. */
  const completed = new Map<string, boolean>()
  before(async () => {
    upstream = await startUpstream('limits', (req: IncomingMessage, res) => {
      let bytes = 0
      req.on('data', (chunk: Buffer) => {
        bytes += chunk.length
      })
      req.on('close', () => completed.set(req.url ?? '', req.complete))
      req.on('end', () => {
        const body = JSON.stringify({ url: req.url, bytes })
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      })
    })
    gw = await startGateway(`
listeners:
  - name: sizes
    port: 0
    host: 127.0.0.1
    limits:
      maxHeaderSize: 2kb
      maxHeaderCount: 10
      maxUrlLength: 256
      maxBodySize: 1kb
  - name: timeouts
    port: 0
    host: 127.0.0.1
    limits:
      headersTimeout: 500ms
      requestTimeout: 1s
      keepAliveTimeout: 1s
  - name: few
    port: 0
    host: 127.0.0.1
    limits:
      maxConnections: 2
services:
  app:
    targets: [${upstream.url}]
routes:
  - name: small
    path: /small
    service: app
    maxBodySize: 100b
  - name: large
    path: /large
    service: app
    maxBodySize: 4kb
  - name: default
    path: /
    service: app
`)
  })
  after(async () => {
    await gw.stop()
    await upstream.close()
  })

  describe('sizes', () => {
    it('answers 431 to a head larger than maxHeaderSize and closes', async () => {
      const result = await rawRequest(gw.port('sizes'), head('/', [`X-Big: ${'a'.repeat(3000)}`]))
      problemIn(result.text, 431, 'GH_HEADERS_TOO_LARGE')
      assert.equal(result.closed, true)
    })

    it('answers 414 to a request target longer than maxUrlLength', async () => {
      const result = await rawRequest(gw.port('sizes'), head(`/${'u'.repeat(300)}`, ['Connection: close']))
      problemIn(result.text, 414, 'GH_URI_TOO_LONG')
      const ok = await request(`${gw.url('sizes')}/${'u'.repeat(200)}`)
      assert.equal(ok.statusCode, 200)
      await ok.body.dump()
    })

    it('answers 431 beyond maxHeaderCount fields and accepts exactly the limit', async () => {
      // Host plus nine: ten fields, the limit.
      const nine = Array.from({ length: 9 }, (_, i) => `X-F${i}: ${i}`)
      const atLimit = await rawRequest(
        gw.port('sizes'),
        head('/count', [...nine.slice(0, 8), 'Connection: close']),
      )
      assert.equal(statusOf(atLimit.text), 200, atLimit.text)
      const over = await rawRequest(gw.port('sizes'), head('/count', [...nine, 'Connection: close']))
      problemIn(over.text, 431, 'GH_HEADERS_TOO_LARGE')
    })

    it('answers 413 from Content-Length before reading the body, and never calls the upstream', async () => {
      const seen = upstream.requests.length
      // Only the head is sent: the answer must not wait for the body.
      const result = await rawRequest(
        gw.port('sizes'),
        'POST /announced HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n',
      )
      problemIn(result.text, 413, 'GH_PAYLOAD_TOO_LARGE')
      assert.match(result.text, /\r\nconnection: close\r\n/i)
      assert.equal(result.closed, true)
      assert.equal(upstream.requests.length, seen)
    })

    it('counts a chunked body while it streams and answers 413 once it passes the limit', async () => {
      const conn = await openRaw(gw.port('sizes'))
      try {
        conn.write('POST /streamed HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n')
        // 600 + 600 bytes > 1kb; the last chunk is never sent, so only counting can refuse it.
        const chunk = `258\r\n${'c'.repeat(600)}\r\n`
        conn.write(chunk)
        conn.write(chunk)
        await eventually(() => statusOf(conn.text()) !== 0 && conn.closed(), { timeout: 10_000 })
        problemIn(conn.text(), 413, 'GH_PAYLOAD_TOO_LARGE')
      } finally {
        conn.destroy()
      }
      // The upstream saw a request start, and saw it cut: never a complete, truncated body.
      await eventually(() => completed.has('/streamed'), { timeout: 10_000 })
      assert.equal(completed.get('/streamed'), false)
    })

    it("answers 413 to chunk extensions past Node's cap, before the upstream sees anything", async () => {
      const seen = upstream.requests.length
      const result = await rawRequest(
        gw.port('sizes'),
        `POST /extensions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;${'e'.repeat(20_000)}\r\nabc\r\n0\r\n\r\n`,
      )
      problemIn(result.text, 413, 'GH_PAYLOAD_TOO_LARGE')
      assert.equal(result.closed, true)
      assert.equal(upstream.requests.length, seen)
    })

    it('passes a chunked body under the limit through intact', async () => {
      const result = await rawRequest(
        gw.port('sizes'),
        `POST /chunked-ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n190\r\n${'o'.repeat(400)}\r\n190\r\n${'k'.repeat(400)}\r\n0\r\n\r\n`,
      )
      assert.equal(statusOf(result.text), 200, result.text)
      assert.deepEqual(JSON.parse(bodyOf(result.text)), { url: '/chunked-ok', bytes: 800 })
    })

    it("lets a route's maxBodySize override the listener's, both ways", async () => {
      const larger = await request(`${gw.url('sizes')}/large`, {
        method: 'POST',
        body: Buffer.alloc(2048, 'l'),
      })
      assert.equal(larger.statusCode, 200)
      assert.deepEqual(await larger.body.json(), { url: '/large', bytes: 2048 })

      const smaller = await rawRequest(
        gw.port('sizes'),
        'POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n',
      )
      problemIn(smaller.text, 413, 'GH_PAYLOAD_TOO_LARGE')
      assert.match(JSON.parse(bodyOf(smaller.text)).detail, /100 bytes/)

      const chunked = await rawRequest(
        gw.port('sizes'),
        `POST /small/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n96\r\n${'s'.repeat(150)}\r\n`,
      )
      problemIn(chunked.text, 413, 'GH_PAYLOAD_TOO_LARGE')
    })
  })

  describe('timeouts', () => {
    it('answers 408 to a slowloris client that sends its head byte by byte', async () => {
      const conn = await openRaw(gw.port('timeouts'))
      const text = `GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: ${'z'.repeat(500)}\r\n\r\n`
      let sent = 0
      // One byte every 50 ms: each byte is progress, but the head is never complete within 500 ms.
      const drip = setInterval(() => {
        if (sent < text.length) conn.write(text[sent++])
      }, 50)
      try {
        await eventually(() => conn.closed(), { timeout: 15_000 })
      } finally {
        clearInterval(drip)
        conn.destroy()
      }
      assert.ok(sent < text.length, 'the connection was closed before the head was complete')
      problemIn(conn.text(), 408, 'GH_REQUEST_TIMEOUT')
    })

    it('answers 408 when the body does not arrive within requestTimeout', async () => {
      const conn = await openRaw(gw.port('timeouts'))
      try {
        conn.write('POST /slow-body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab')
        await eventually(() => conn.closed(), { timeout: 15_000 })
        problemIn(conn.text(), 408, 'GH_REQUEST_TIMEOUT')
      } finally {
        conn.destroy()
      }
    })

    it('keeps a connection alive between requests, then closes it after keepAliveTimeout idle', async () => {
      const conn = await openRaw(gw.port('timeouts'))
      try {
        conn.write(head('/first'))
        await eventually(() => responses(conn.text()) === 1, { timeout: 10_000 })
        assert.match(conn.text(), /\r\nkeep-alive: timeout=1\r\n/i)
        conn.write(head('/second'))
        await eventually(() => responses(conn.text()) === 2, { timeout: 10_000 })
        await eventually(() => conn.closed(), { timeout: 15_000 })
        // Closed quietly: no 408 or other reply to an idle connection.
        assert.equal(conn.text().split('HTTP/1.1 ').length - 1, 2)
      } finally {
        conn.destroy()
      }
    })
  })

  describe('maxConnections', () => {
    it('closes connections beyond the cap and accepts again when one frees up', async () => {
      const open: RawConnection[] = []
      try {
        for (const path of ['/one', '/two']) {
          const conn = await openRaw(gw.port('few'))
          open.push(conn)
          conn.write(head(path))
          await eventually(() => responses(conn.text()) === 1, { timeout: 10_000 })
        }
        const third = await openRaw(gw.port('few'))
        open.push(third)
        third.write(head('/three'))
        await eventually(() => third.closed(), { timeout: 10_000 })
        assert.equal(third.text(), '', 'nothing is answered on a connection beyond the cap')

        open[0].destroy()
        await eventually(
          async () => {
            const result = await rawRequest(gw.port('few'), head('/again', ['Connection: close']))
            return statusOf(result.text) === 200
          },
          { timeout: 10_000 },
        )
      } finally {
        for (const conn of open) conn.destroy()
      }
    })
  })
})
