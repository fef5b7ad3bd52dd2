/**
 * Every reply Gatehouse makes itself is RFC 9457 problem+json with type,
 * title, status, detail, code and the request id (== the X-Request-Id
 * response header), and carries its own headers (Allow on 405). And
 * docs/errors.md documents exactly the table in src/errors.ts.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { connect as connectHttp2 } from 'node:http2'
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { Type } from '@sinclair/typebox'
import { request } from 'undici'
import { ERRORS, type ErrorCode, PROBLEM_TYPE_BASE } from '../../src/errors.ts'
import { definePlugin, type PluginDefinition } from '../../src/pipeline/plugin.ts'
import { builtinPlugins } from '../../src/plugins/index.ts'
import { makeCertificates, type TestPki } from '../helpers/certs.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { openRaw, rawRequest, statusOf } from '../helpers/raw.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: ErrorCode
  requestId: string
  instance?: string
}

/** The checks every problem reply must pass, whatever its cause. */
function assertProblem(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  body: string,
  code: ErrorCode,
): Problem {
  assert.equal(headers['content-type'], 'application/problem+json', `${code}: content-type`)
  const problem = JSON.parse(body) as Problem
  const spec = ERRORS[code]
  assert.equal(problem.code, code)
  assert.equal(status, spec.status, `${code}: HTTP status`)
  assert.equal(problem.status, spec.status, `${code}: status member`)
  assert.equal(problem.type, `${PROBLEM_TYPE_BASE}${spec.slug}`)
  assert.equal(problem.title, spec.title)
  assert.equal(typeof problem.detail, 'string')
  assert.ok(problem.detail.length > 0, `${code}: detail`)
  assert.equal(typeof problem.requestId, 'string')
  assert.ok(problem.requestId.length > 0)
  assert.equal(headers['x-request-id'], problem.requestId, `${code}: X-Request-Id header`)
  return problem
}

/** Parses a raw HTTP/1.1 response (head and a Content-Length body). */
function parseRaw(text: string) {
  const end = text.indexOf('\r\n\r\n')
  const lines = text.slice(0, end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: statusOf(text), headers, body: text.slice(end + 4) }
}

const crash = definePlugin({
  name: 'test-crash',
  order: { after: 'ip-restriction' },
  schema: Type.Object({}),
  create: () => ({
    onRequest() {
      throw new Error('a bug in a plugin')
    },
  }),
})

async function rawServer(answer: (socket: Socket) => void): Promise<Server & { url: string }> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    answer(socket)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const close = server.close.bind(server)
  return Object.assign(server, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: (callback?: (error?: Error) => void) => {
      for (const socket of sockets) socket.destroy()
      return close(callback)
    },
  })
}

describe('problem replies', () => {
  let app: Upstream
  let garbage: Server & { url: string }
  let silent: Server & { url: string }
  let closedPort: number
  let gw: TestGateway
  before(async () => {
    app = await startUpstream('app')
    // Answers something that is not HTTP.
    garbage = await rawServer((socket) => socket.end('NOT HTTP AT ALL\r\n\r\n'))
    // Reads the request and never answers.
    silent = await rawServer(() => {})
    const probe = await rawServer(() => {})
    closedPort = (probe.address() as AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    gw = await startGateway(
      `
listeners:
  - name: main
    port: 0
    host: 127.0.0.1
    limits: {maxUrlLength: 64, maxHeaderCount: 20, maxHeaderSize: 4kb}
  - {name: slow, port: 0, host: 127.0.0.1, limits: {headersTimeout: 300ms}}
services:
  app: {targets: [${app.url}]}
  closed: {targets: ['http://127.0.0.1:${closedPort}']}
  garbage: {targets: [${garbage.url}]}
  silent: {targets: [${silent.url}], timeouts: {response: 300ms}}
routes:
  - {path: /get-only, methods: [GET], service: app}
  - {path: /small, service: app, maxBodySize: 16b}
  - {path: /forbidden, service: app, plugins: [{name: ip-restriction, config: {deny: [0.0.0.0/0]}}]}
  - {path: /crash, service: app, plugins: [test-crash]}
  - {path: /closed, service: closed}
  - {path: /garbage, service: garbage}
  - {path: /silent, service: silent}
`,
      {},
      { plugins: new Map([...builtinPlugins(), ['test-crash', crash as PluginDefinition<never>]]) },
    )
  })
  after(async () => {
    await gw.stop()
    await app.close()
    await Promise.all([garbage, silent].map((s) => new Promise((resolve) => s.close(resolve))))
  })

  const send = async (
    path: string,
    options: { method?: string; headers?: Record<string, string>; body?: string } = {},
  ) => {
    const res = await request(`${gw.url('main')}${path}`, {
      method: (options.method ?? 'GET') as 'GET',
      headers: options.headers,
      body: options.body,
    })
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
  }

  it('answers each refusal and failure with its problem (code, type, title, status, detail, request id)', async () => {
    const cases: [string, Parameters<typeof send>[1], ErrorCode][] = [
      ['/nowhere', {}, 'GH_ROUTE_NOT_FOUND'],
      ['/forbidden', {}, 'GH_FORBIDDEN'],
      ['/small', { method: 'POST', body: 'x'.repeat(100) }, 'GH_PAYLOAD_TOO_LARGE'],
      [`/${'long/'.repeat(20)}`, {}, 'GH_URI_TOO_LONG'],
      [
        '/get-only',
        { headers: Object.fromEntries(Array.from({ length: 25 }, (_, i) => [`x-extra-${i}`, 'v'])) },
        'GH_HEADERS_TOO_LARGE',
      ],
      ['/crash', {}, 'GH_INTERNAL'],
      ['/closed', {}, 'GH_UPSTREAM_UNREACHABLE'],
      ['/garbage', {}, 'GH_UPSTREAM_BAD_RESPONSE'],
      ['/silent', {}, 'GH_UPSTREAM_TIMEOUT'],
    ]
    const seen = new Set<ErrorCode>()
    for (const [path, options, code] of cases) {
      const res = await send(path, options)
      const problem = assertProblem(res.status, res.headers, res.body, code)
      seen.add(problem.code)
    }
    assert.equal(seen.size, cases.length)
  })

  it('keeps an incoming request id and sends it back in the body and the header', async () => {
    const res = await send('/nowhere', { headers: { 'x-request-id': 'trace-me-42' } })
    const problem = assertProblem(res.status, res.headers, res.body, 'GH_ROUTE_NOT_FOUND')
    assert.equal(problem.requestId, 'trace-me-42')
    assert.equal(problem.instance, '/nowhere')
  })

  it('carries Allow on 405 (RFC 9110 §15.5.6)', async () => {
    const res = await send('/get-only', { method: 'DELETE' })
    assertProblem(res.status, res.headers, res.body, 'GH_METHOD_NOT_ALLOWED')
    assert.match(String(res.headers.allow), /\bGET\b/)
    assert.doesNotMatch(String(res.headers.allow), /DELETE/)
  })

  it('answers HEAD with the problem headers and no body', async () => {
    const id = { 'x-request-id': 'head-check' }
    const get = await send('/nowhere', { headers: id })
    const head = await request(`${gw.url('main')}/nowhere`, { method: 'HEAD', headers: id })
    assert.equal(head.statusCode, 404)
    assert.equal(head.headers['content-type'], 'application/problem+json')
    assert.equal(head.headers['x-request-id'], 'head-check')
    assert.equal(await head.body.text(), '')
    // Content-Length is that of the body a GET would get (RFC 9110 §9.3.2); only the method in detail differs.
    const asHead = get.body.replace('No route for GET', 'No route for HEAD')
    assert.equal(Number(head.headers['content-length']), Buffer.byteLength(asHead))
  })

  it('answers a request target that is not a path with 400, and an unknown expectation with 417', async () => {
    const star = parseRaw((await rawRequest(gw.port('main'), 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n')).text)
    assertProblem(star.status, star.headers, star.body, 'GH_BAD_REQUEST')
    // undici refuses to send Expect, so this one goes raw.
    const expect = parseRaw(
      (
        await rawRequest(
          gw.port('main'),
          'GET /get-only HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nConnection: close\r\n\r\n',
        )
      ).text,
    )
    assertProblem(expect.status, expect.headers, expect.body, 'GH_EXPECTATION_FAILED')
  })

  it('answers what the HTTP parser refuses (bad framing, oversized head) with problems too', async () => {
    const smuggled = parseRaw(
      (
        await rawRequest(
          gw.port('main'),
          'POST /get-only HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
        )
      ).text,
    )
    assertProblem(smuggled.status, smuggled.headers, smuggled.body, 'GH_BAD_REQUEST')
    const huge = parseRaw(
      (await rawRequest(gw.port('main'), `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`))
        .text,
    )
    assertProblem(huge.status, huge.headers, huge.body, 'GH_HEADERS_TOO_LARGE')
  })

  it('answers a request head that does not arrive in time with 408 and closes', async () => {
    const connection = await openRaw(gw.port('slow'))
    connection.write('GET / HTTP/1.1\r\nHost: x\r\n')
    await connection.done
    const res = parseRaw(connection.text())
    assertProblem(res.status, res.headers, res.body, 'GH_REQUEST_TIMEOUT')
  })
})

describe('problem replies over HTTP/2', () => {
  let pki: TestPki
  let gw: TestGateway
  before(async () => {
    pki = await makeCertificates(['localhost'])
    const cert = pki.certs.localhost
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
    tls: {certificates: [{cert: ${cert.certFile}, key: ${cert.keyFile}}], http2: true}
routes:
  - {path: /small, respond: {status: 200}, maxBodySize: 16b}
`)
  })
  after(async () => {
    await gw.stop()
    await pki.remove()
  })

  /** One HTTP/2 request; the session is closed after it. */
  const h2 = (path: string, method: string, body?: string) =>
    new Promise<{ headers: Record<string, string | string[] | undefined>; body: string }>(
      (resolve, reject) => {
        const session = connectHttp2(`https://localhost:${gw.port()}`, { ca: pki.ca.cert })
        session.on('error', reject)
        const headers: Record<string, string> = { ':path': path, ':method': method }
        if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body))
        const stream = session.request(headers)
        const chunks: Buffer[] = []
        let head: Record<string, string | string[] | undefined> = {}
        stream.on('response', (h) => {
          head = h as typeof head
        })
        stream.on('data', (chunk: Buffer) => chunks.push(chunk))
        stream.on('error', reject)
        stream.on('end', () => {
          session.close()
          resolve({ headers: head, body: Buffer.concat(chunks).toString() })
        })
        stream.end(body)
      },
    )

  it('leaves out the connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2)', async () => {
    // A body refused before it is read asks an HTTP/1.1 connection to close; on HTTP/2 that field must go.
    const refused = await h2('/small', 'POST', 'x'.repeat(100))
    assertProblem(Number(refused.headers[':status']), refused.headers, refused.body, 'GH_PAYLOAD_TOO_LARGE')
    assert.equal(refused.headers.connection, undefined)
    const missing = await h2('/nowhere', 'GET')
    assertProblem(Number(missing.headers[':status']), missing.headers, missing.body, 'GH_ROUTE_NOT_FOUND')
  })
})

describe('docs/errors.md', () => {
  it('documents every code of src/errors.ts with its status, type and title, and nothing else', async () => {
    const text = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8')
    const documented = new Map<string, { status: number; type: string; title: string; when: string }>()
    for (const line of text.split('\n')) {
      const cells = line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim().replace(/^`(.*)`$/, '$1'))
      if (cells.length < 5 || !/^GH_[A-Z0-9_]+$/.test(cells[0])) continue
      assert.ok(!documented.has(cells[0]), `${cells[0]} is documented twice`)
      documented.set(cells[0], { status: Number(cells[1]), type: cells[2], title: cells[3], when: cells[4] })
    }
    assert.deepEqual([...documented.keys()].sort(), Object.keys(ERRORS).sort(), 'the codes differ')
    for (const [code, spec] of Object.entries(ERRORS)) {
      const doc = documented.get(code)!
      assert.equal(doc.status, spec.status, `${code}: status`)
      assert.equal(doc.type, PROBLEM_TYPE_BASE + spec.slug, `${code}: type`)
      assert.equal(doc.title, spec.title, `${code}: title`)
      assert.ok(doc.when.length > 10, `${code}: say when it happens`)
    }
  })
})
