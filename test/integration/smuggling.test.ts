/**
 * Request smuggling vectors over raw sockets: every one is refused with a
 * problem+json 400, the connection is closed, and the upstream never sees a
 * request from it (neither the outer one nor a smuggled inner one). Most are
 * refused by llhttp in strict mode (client-error.ts answers); the rest by
 * accept() in handle.ts.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { request } from 'undici'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { bodyOf, rawRequest, statusOf } from '../helpers/raw.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/** The request a vector tries to slip past the gateway inside another one's body. */
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n'

const VECTORS: Record<string, string> = {
  // RFC 9112 §6.1: Content-Length with Transfer-Encoding (CL.TE and TE.CL desync).
  'Content-Length with Transfer-Encoding (CL.TE)': `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  'Transfer-Encoding with Content-Length (TE.CL)': `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  // RFC 9112 §6.3: differing Content-Length values.
  'two differing Content-Length headers': `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
  'a Content-Length list': `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0, ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
  // RFC 9112 §6.1 / §6.3: a request's Transfer-Encoding must end in chunked, and be one we know.
  'Transfer-Encoding: chunked, identity': `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  'Transfer-Encoding: xchunked': `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  'Transfer-Encoding not ending in chunked': `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  'two Transfer-Encoding headers, the last not chunked': `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  'whitespace before the colon of Transfer-Encoding': `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  // RFC 9112 §5.2: obs-fold (a line starting with SP or HTAB continues the previous field).
  'obs-fold with a space': 'GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n',
  'obs-fold with a tab': 'GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\tc\r\n\r\n',
  // RFC 9112 §2.2: bare LF line endings, read differently by different parsers.
  'bare LF line endings': 'GET /a HTTP/1.1\nHost: x\n\n',
  'a bare LF inside the head': 'GET /a HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n',
  // RFC 9112 §7.1: chunk sizes are hex digits, lines end with CRLF.
  'a bad chunk size': `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n${SMUGGLED}`,
  'a chunk size line ending in a bare LF': `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n${SMUGGLED}`,
  // The rest pass llhttp and are refused by Gatehouse (accept() in handle.ts).
  // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
  'Transfer-Encoding in an HTTP/1.0 request': `POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  // RFC 9112 §3.2: exactly one valid Host in HTTP/1.1.
  'no Host header': 'GET /a HTTP/1.1\r\n\r\n',
  'two Host headers': 'GET /a HTTP/1.1\r\nHost: good.example\r\nHost: evil.example\r\n\r\n',
  'an invalid Host value': 'GET /a HTTP/1.1\r\nHost: evil.example/path\r\n\r\n',
}

describe('request smuggling defences', () => {
  let upstream: Upstream
  let gw: TestGateway
  before(async () => {
    upstream = await startUpstream('smuggling')
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
services:
  app:
    targets: [${upstream.url}]
routes:
  - path: /
    service: app
`)
  })
  after(async () => {
    await gw.stop()
    await upstream.close()
  })

  for (const [name, payload] of Object.entries(VECTORS)) {
    it(`refuses ${name} with 400 and closes the connection`, async () => {
      const seenBefore = upstream.requests.length
      const result = await rawRequest(gw.port(), payload, 5000)
      assert.equal(statusOf(result.text), 400, result.text)
      assert.equal(result.closed, true, 'the gateway closes the connection')
      assert.match(result.text, /\r\ncontent-type: application\/problem\+json\r\n/i)
      assert.match(result.text, /\r\nconnection: close\r\n/i)
      const problem = JSON.parse(bodyOf(result.text)) as {
        code: string
        status: number
        type: string
      }
      assert.equal(problem.code, 'GH_BAD_REQUEST')
      assert.equal(problem.status, 400)
      assert.equal(problem.type, 'urn:gatehouse:problem:bad-request')
      // A request through the same gateway afterwards arrives; nothing from the vector arrived before it.
      const probe = await request(`${gw.url()}/probe`)
      await probe.body.dump()
      assert.equal(probe.statusCode, 200)
      assert.deepEqual(
        upstream.requests.slice(seenBefore).map((req) => req.url),
        ['/probe'],
      )
    })
  }

  it('still forwards a well-formed chunked request on the same kind of raw socket', async () => {
    const seenBefore = upstream.requests.length
    const result = await rawRequest(
      gw.port(),
      'POST /ok HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      5000,
    )
    assert.equal(statusOf(result.text), 200, result.text)
    assert.deepEqual(
      upstream.requests.slice(seenBefore).map((req) => req.url),
      ['/ok'],
    )
  })

  it('stays strict when Node runs with --insecure-http-parser', async () => {
    // The flag changes Node's default parser for the whole process, so it takes a process of its own.
    const helpers = new URL('../helpers/', import.meta.url).href
    const script = `
      import { startGateway } from '${helpers}gateway.ts'
      import { rawRequest, statusOf } from '${helpers}raw.ts'
      const gw = await startGateway('listeners: [{port: 0, host: 127.0.0.1}]\\nroutes: [{path: /, respond: {body: ok}}]')
      const statuses = []
      for (const payload of ${JSON.stringify([VECTORS['Content-Length with Transfer-Encoding (CL.TE)'], VECTORS['obs-fold with a space']])})
        statuses.push(statusOf((await rawRequest(gw.port(), payload, 5000)).text))
      await gw.stop()
      console.log(JSON.stringify(statuses))
    `
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--insecure-http-parser', '--input-type=module', '--eval', script],
      { timeout: 20_000 },
    )
    assert.deepEqual(JSON.parse(stdout), [400, 400])
  })
})
