/**
 * Retries and timeouts over real sockets: which failures are retried (and to
 * another target), which never are (POST by default, bodies too big to keep,
 * a response already started), the attempts in the access log, and the
 * total / per-route timeouts.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import type { AccessLogLine } from '../../src/observability/access-log.ts'
import { createCleanup } from '../helpers/cleanup.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const cleanup = createCleanup()
after(() => cleanup.run())

async function upstream(name: string, handler?: (req: IncomingMessage, res: ServerResponse) => void) {
  return cleanup.track(await startUpstream(name, handler))
}

async function gateway(yaml: string): Promise<TestGateway> {
  return cleanup.track(await startGateway(yaml))
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** Reads the request body, then answers JSON {name, length, sha256}. */
function bodyEcho(name: string) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const hash = createHash('sha256')
    let length = 0
    req.on('data', (chunk: Buffer) => {
      hash.update(chunk)
      length += chunk.length
    })
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ name, length, sha256: hash.digest('hex') }))
    })
  }
}

/** Reads the request body, then answers `status`. */
function answering(status: number) {
  return (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'text/plain' })
      res.end(`status ${status}`)
    })
  }
}

function config(services: string, routes = '  - { path: /, service: app }'): string {
  return `
listeners:
  - { port: 0, host: 127.0.0.1 }
services:
${services}
routes:
${routes}
`
}

async function send(
  gw: TestGateway,
  path: string,
  options: { method?: string; body?: string | Buffer | Readable } = {},
) {
  const res = await request(`${gw.url()}${path}`, {
    method: (options.method ?? 'GET') as 'GET',
    body: options.body,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  })
  const text = await res.body.text()
  return { status: res.statusCode, text, headers: res.headers }
}

describe('retries', () => {
  it('by default retries a GET refused by one target on another, once, and logs the attempts', async () => {
    const closed = await freePort()
    const live = await upstream('live')
    const dir = await mkdtemp(join(tmpdir(), 'gh-retry-'))
    cleanup.defer(() => rm(dir, { recursive: true, force: true }))
    const gw = await gateway(`${config(`  app:
    targets: [http://127.0.0.1:${closed}, ${live.url}]`)}
accessLog: { file: ${join(dir, 'access.log')} }
`)
    for (let i = 0; i < 10; i++) {
      const reply = await send(gw, `/get/${i}`)
      assert.equal(reply.status, 200, reply.text)
      assert.equal(JSON.parse(reply.text).name, 'live')
    }
    assert.equal(live.requests.length, 10)
    // A POST is not idempotent: refused on the dead target, it is the client's 502.
    const posts = await Promise.all(
      Array.from({ length: 4 }, () => send(gw, '/post', { method: 'POST', body: 'x' })),
    )
    assert.ok(
      posts.some((p) => p.status === 502),
      `statuses ${posts.map((p) => p.status)}`,
    )
    const lines = await eventually(async () => {
      const text = await readFile(join(dir, 'access.log'), 'utf8')
      const parsed = text
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as AccessLogLine)
      assert.equal(parsed.length, 14)
      return parsed
    })
    const gets = lines.filter((l) => l.method === 'GET')
    assert.ok(
      gets.some((l) => l.attempts === 2),
      'the GETs first sent to the refused target took two tries',
    )
    assert.ok(gets.every((l) => l.attempts === 1 || l.attempts === 2))
    assert.ok(lines.filter((l) => l.method === 'POST').every((l) => l.attempts === 1))
  })

  it('retries a status of the retried list on another target, and relays it when attempts run out', async () => {
    const failing = await upstream('failing', answering(503))
    const good = await upstream('good')
    const gw = await gateway(
      config(
        `  app:
    targets: [${failing.url}, ${good.url}]
    retries: { attempts: 2, backoff: { base: 1ms, max: 5ms } }
  single:
    targets: [${failing.url}]
    retries: { attempts: 3 }`,
        `  - { path: /single, service: single }
  - { path: /, service: app }`,
      ),
    )
    for (let i = 0; i < 20; i++) {
      const reply = await send(gw, `/s/${i}`)
      assert.equal(reply.status, 200, reply.text)
    }
    assert.ok(failing.requests.length >= 5, 'the failing target was tried')
    // No other target to retry on: the target's own 503 is relayed, after one try.
    const before = failing.requests.length
    const alone = await send(gw, '/single')
    assert.equal(alone.status, 503)
    assert.equal(alone.text, 'status 503')
    assert.equal(failing.requests.length, before + 1, 'a retry goes to another target, never the same')
  })

  it('retries a reset before any response byte, and a try with no head within perTryTimeout', async () => {
    const resetting = await upstream('reset', (req) => req.socket.destroy())
    const silent = await upstream('silent', () => {})
    const good = await upstream('good')
    const gw = await gateway(
      config(`  app:
    targets: [${resetting.url}, ${silent.url}, ${good.url}]
    retries: { attempts: 3, perTryTimeout: 200ms, backoff: { base: 1ms, max: 5ms }, budget: { min: 50 } }`),
    )
    const replies = await Promise.all(Array.from({ length: 12 }, (_, i) => send(gw, `/r/${i}`)))
    assert.deepEqual(
      replies.map((r) => r.status),
      Array(12).fill(200),
    )
    assert.ok(resetting.requests.length > 0 && silent.requests.length > 0, 'both bad targets were tried')
    assert.equal(good.requests.length, 12)
  })

  it('does not retry POST by default; retries it with the whole body when methods include POST', async () => {
    const failing = await upstream('failing', answering(503))
    const good = await upstream('good', bodyEcho('good'))
    const gw = await gateway(
      config(
        `  app:
    targets: [${failing.url}, ${good.url}]
    retries: { backoff: { base: 1ms, max: 5ms } }
  posts:
    targets: [${failing.url}, ${good.url}]
    retries: { methods: [POST], backoff: { base: 1ms, max: 5ms }, bufferBody: 16kb }`,
        `  - { path: /posts, service: posts }
  - { path: /, service: app }`,
      ),
    )
    const body = Buffer.alloc(10_000, 'p')
    const sha = createHash('sha256').update(body).digest('hex')
    const plain = await Promise.all(Array.from({ length: 4 }, () => send(gw, '/p', { method: 'POST', body })))
    assert.equal(plain.filter((r) => r.status === 503).length, 2, 'two of four POSTs met the failing target')

    const failedBefore = failing.requests.length
    for (let i = 0; i < 6; i++) {
      const reply = await send(gw, '/posts', { method: 'POST', body })
      assert.equal(reply.status, 200, reply.text)
      assert.deepEqual(JSON.parse(reply.text), { name: 'good', length: body.length, sha256: sha })
    }
    assert.ok(failing.requests.length > failedBefore, 'some POSTs were tried on the failing target first')

    // A chunked body (no Content-Length) under the limit is kept and resent whole too.
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 10; i++) yield body.subarray(i * 1000, (i + 1) * 1000)
    }
    for (let i = 0; i < 4; i++) {
      const reply = await send(gw, '/posts', { method: 'POST', body: Readable.from(chunks()) })
      assert.equal(reply.status, 200, reply.text)
      assert.deepEqual(JSON.parse(reply.text), { name: 'good', length: body.length, sha256: sha })
    }
  })

  it('streams a body over bufferBody and never retries it', async () => {
    const failing = await upstream('failing', answering(503))
    const good = await upstream('good', bodyEcho('good'))
    const gw = await gateway(
      config(`  app:
    targets: [${failing.url}, ${good.url}]
    retries: { bufferBody: 1kb, backoff: { base: 1ms, max: 5ms } }`),
    )
    const body = Buffer.alloc(4096, 'b')
    const sha = createHash('sha256').update(body).digest('hex')
    async function* chunked(): AsyncGenerator<Buffer> {
      for (let i = 0; i < 4; i++) yield body.subarray(i * 1024, (i + 1) * 1024)
    }
    const replies = [
      await send(gw, '/a', { method: 'PUT', body }),
      await send(gw, '/b', { method: 'PUT', body }),
      await send(gw, '/c', { method: 'PUT', body: Readable.from(chunked()) }),
      await send(gw, '/d', { method: 'PUT', body: Readable.from(chunked()) }),
    ]
    assert.equal(replies.filter((r) => r.status === 503).length, failing.requests.length)
    assert.equal(replies.filter((r) => r.status === 200).length, good.requests.length)
    assert.equal(failing.requests.length, 2, 'half met the failing target, and were not retried')
    for (const reply of replies.filter((r) => r.status === 200))
      assert.equal(JSON.parse(reply.text).sha256, sha, 'a streamed body arrives whole')
  })

  it('never retries a response that has started', async () => {
    const cutting = await upstream('cutting', (req, res) => {
      res.writeHead(200, { 'content-length': '100' })
      res.write('partial')
      setImmediate(() => req.socket.destroy())
    })
    const good = await upstream('good')
    const gw = await gateway(
      config(`  app:
    targets: [${cutting.url}, ${good.url}]
    retries: { attempts: 3 }`),
    )
    let cut = 0
    for (let i = 0; i < 6; i++) {
      try {
        const reply = await send(gw, `/c/${i}`)
        assert.equal(reply.status, 200)
      } catch {
        cut++
      }
    }
    assert.equal(
      cut,
      cutting.requests.length,
      'each response started by the cutting target reached the client cut',
    )
    assert.equal(good.requests.length, 6 - cut, 'and was not tried again elsewhere')
    assert.ok(cut > 0)
  })
})

describe('timeouts', () => {
  let held: Upstream
  let trickle: Upstream
  let gw: TestGateway

  it('answers 504 when the total timeout expires before a response, over retries and backoff', async () => {
    held = await upstream('held', () => {})
    trickle = await upstream('trickle', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('a')
      const timer = setInterval(() => res.write('b'), 50)
      res.on('close', () => clearInterval(timer))
    })
    gw = await gateway(
      config(
        `  app:
    targets: [${held.url}]
    timeouts: { response: 20s, total: 400ms }
  stall:
    targets: [${held.url}]
    timeouts: { response: 20s }
  trickle:
    targets: [${trickle.url}]
    timeouts: { response: 20s, idle: 20s }`,
        `  - { path: /total, service: app }
  - { path: /route-response, service: stall, timeouts: { response: 300ms } }
  - { path: /route-total, service: trickle, timeouts: { total: 300ms } }`,
      ),
    )
    const reply = await send(gw, '/total')
    assert.equal(reply.status, 504)
    const problem = JSON.parse(reply.text)
    assert.equal(problem.code, 'GH_UPSTREAM_TIMEOUT')
    assert.match(problem.detail, /longer than 0.4s/)
  })

  it('takes the response timeout from the route over the service', async () => {
    const reply = await send(gw, '/route-response')
    assert.equal(reply.status, 504)
    const problem = JSON.parse(reply.text)
    assert.equal(problem.code, 'GH_UPSTREAM_TIMEOUT')
    assert.match(problem.detail, /did not send a response in time/)
  })

  it('cuts the client connection when the total timeout expires after the response started', async () => {
    const res = await request(`${gw.url()}/route-total`, { headersTimeout: 10_000, bodyTimeout: 10_000 })
    assert.equal(res.statusCode, 200)
    await assert.rejects(res.body.text(), 'the body never completes cleanly')
  })

  it('closes the client connection after an idle silence the route sets', async () => {
    const idler = await upstream('idler', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('first')
    })
    const gw2 = await gateway(
      config(
        `  idle:
    targets: [${idler.url}]
    timeouts: { idle: 20s }`,
        '  - { path: /, service: idle, timeouts: { idle: 150ms } }',
      ),
    )
    const res = await request(`${gw2.url()}/x`, { headersTimeout: 10_000, bodyTimeout: 10_000 })
    assert.equal(res.statusCode, 200)
    await assert.rejects(res.body.text())
  })
})

describe('retry and timeout config', () => {
  it('refuses connect among a route timeouts: it is a pool setting of the service', async () => {
    await assert.rejects(
      startGateway(
        config(
          `  app:
    targets: [http://127.0.0.1:9]`,
          '  - { path: /, service: app, timeouts: { connect: 1s } }',
        ),
      ),
      /connect/,
    )
  })

  it('normalizes retries with their defaults, and the conservative default without the key', async () => {
    const gw = await gateway(
      config(`  app:
    targets: [http://127.0.0.1:9]
    retries: { attempts: 3, budget: { percent: 50 } }
  plain:
    targets: [http://127.0.0.1:9]`),
    )
    const services = gw.gateway.runtime.config.services
    assert.deepEqual(services.app.retries, {
      attempts: 3,
      methods: ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'],
      on: ['connect-failure', 'reset', 'timeout'],
      statuses: [502, 503, 504],
      perTryTimeoutMs: null,
      backoff: { baseMs: 25, maxMs: 250 },
      budget: { percent: 50, min: 3 },
      bufferBodyBytes: 65536,
    })
    assert.equal(services.plain.retries.attempts, 2)
    assert.deepEqual(services.plain.retries.on, ['connect-failure'])
    assert.deepEqual(services.plain.retries.statuses, [])
    assert.equal(services.plain.retries.bufferBodyBytes, 0)
    assert.equal(services.plain.timeouts.totalMs, 0)
  })
})
