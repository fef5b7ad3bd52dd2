/**
 * The shortcuts of the proxy hot path keep behaviour: a body whose last
 * chunk completes its Content-Length is written with end(chunk); bodies that
 * do not fit that (HEAD, 204, 304, many chunks, no length) still arrive whole
 * and leave the connection reusable; onComplete runs once per request from
 * the shared 'close' listener; `ctx.locals` is per request.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Type } from '@sinclair/typebox'
import { Client } from 'undici'
import type { RequestContext } from '../../src/pipeline/context.ts'
import { definePlugin, type PluginDefinition } from '../../src/pipeline/plugin.ts'
import { builtinPlugins } from '../../src/plugins/index.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const BIG = Buffer.alloc(1024 * 1024 + 7, 'x')
const SMALL = Buffer.from('a'.repeat(100))
/** Every byte value, in bodies at and just past the size written with the head in one write (forward.ts). */
const BINARY = new Map(
  [256, 4096, 4097].map((size) => [
    `/binary-${size}`,
    Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + 3) % 256)),
  ]),
)

/** What each completed request left in onComplete: its id, status and the locals the request phase set. */
const completed: { id: string; status: number; mark: unknown }[] = []

const recorder = definePlugin<Record<string, never>>({
  name: 'test-locals',
  order: { after: 'ip-restriction' },
  schema: Type.Object({}, { additionalProperties: false }),
  create() {
    return {
      onRequest(ctx: RequestContext) {
        // Unique per request: another request's value showing up here would mean shared locals.
        ctx.locals.mark = `mark-${ctx.requestId}`
      },
      onComplete(ctx: RequestContext) {
        completed.push({ id: ctx.requestId, status: ctx.status, mark: ctx.locals.mark })
      },
    }
  },
})

describe('hot path', () => {
  let upstream: Upstream
  let gw: TestGateway
  let client: Client
  before(async () => {
    upstream = await startUpstream('bodies', (req, res) => {
      req.resume()
      const path = req.url ?? '/'
      const binary = BINARY.get(path)
      if (binary !== undefined) res.writeHead(200, { 'content-length': binary.length }).end(binary)
      else if (path === '/small') res.writeHead(200, { 'content-length': SMALL.length }).end(SMALL)
      else if (path === '/empty') res.writeHead(200, { 'content-length': 0 }).end()
      else if (path === '/no-content') res.writeHead(204).end()
      else if (path === '/not-modified') res.writeHead(304, { 'content-length': 5000, etag: '"v1"' }).end()
      else if (path === '/big') {
        // Many writes: the body reaches the gateway in several chunks.
        res.writeHead(200, { 'content-length': BIG.length })
        for (let at = 0; at < BIG.length; at += 16384) res.write(BIG.subarray(at, at + 16384))
        res.end()
      } else if (path === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain' })
        res.write('one,')
        res.end('two')
      } else res.writeHead(404).end()
    })
    gw = await startGateway(
      `
listeners:
  - port: 0
    host: 127.0.0.1
services:
  bodies:
    targets: [${upstream.url}]
routes:
  - path: /
    service: bodies
    plugins: [test-locals]
`,
      {},
      {
        plugins: new Map<string, PluginDefinition<never>>([
          ...builtinPlugins(),
          [recorder.name, recorder as PluginDefinition<never>],
        ]),
      },
    )
    // A Client is one connection: every request below reuses it, so a response cut short or too long breaks the next.
    client = new Client(gw.url(), { pipelining: 1 })
  })
  after(async () => {
    await client.close()
    await gw.stop()
    await upstream.close()
  })

  async function get(path: string, method: 'GET' | 'HEAD' = 'GET') {
    const res = await client.request({ path, method })
    const body = Buffer.from(await res.body.arrayBuffer())
    return { status: res.statusCode, headers: res.headers, body }
  }

  it('relays Content-Length bodies of one chunk, many chunks and none, on one reused connection', async () => {
    for (let round = 0; round < 3; round++) {
      const small = await get('/small')
      assert.equal(small.status, 200)
      assert.equal(small.headers['content-length'], '100')
      assert.deepEqual(small.body, SMALL)

      const big = await get('/big')
      assert.equal(big.status, 200)
      assert.equal(big.body.length, BIG.length)
      assert.ok(big.body.equals(BIG))

      const empty = await get('/empty')
      assert.equal(empty.status, 200)
      assert.equal(empty.body.length, 0)
    }
    // One request at a time: the gateway carried all nine on one upstream connection (keep-alive).
    assert.equal(upstream.connections(), 1)
  })

  it('relays small binary bodies byte for byte, written with the head or after it', async () => {
    for (const [path, body] of BINARY) {
      const res = await get(path)
      assert.equal(res.status, 200)
      assert.equal(res.headers['content-length'], String(body.length))
      assert.ok(res.body.equals(body), path)
    }
  })

  it('sends no body for HEAD, 204 and 304 whatever Content-Length says, and the connection stays usable', async () => {
    const head = await get('/small', 'HEAD')
    assert.equal(head.status, 200)
    assert.equal(head.headers['content-length'], '100')
    assert.equal(head.body.length, 0)

    const noContent = await get('/no-content')
    assert.equal(noContent.status, 204)
    assert.equal(noContent.body.length, 0)

    const notModified = await get('/not-modified')
    assert.equal(notModified.status, 304)
    assert.equal(notModified.headers.etag, '"v1"')
    assert.equal(notModified.body.length, 0)

    const after = await get('/small')
    assert.deepEqual(after.body, SMALL)
  })

  it('relays a chunked body (no Content-Length) whole', async () => {
    const chunked = await get('/chunked')
    assert.equal(chunked.status, 200)
    assert.equal(chunked.body.toString(), 'one,two')
  })

  it('runs onComplete once per request, with that request’s own locals and status', async () => {
    completed.length = 0
    const ids: string[] = []
    for (const path of ['/small', '/big', '/missing']) {
      const res = await client.request({ path, method: 'GET' })
      await res.body.arrayBuffer()
      ids.push(String(res.headers['x-request-id']))
    }
    await eventually(() => assert.equal(completed.length, 3))
    assert.deepEqual(
      completed.map((c) => [c.id, c.status, c.mark]),
      ids.map((id, i) => [id, [200, 200, 404][i], `mark-${id}`]),
    )
    assert.equal(new Set(ids).size, 3)
    assert.equal(gw.gateway.runtime.inflight, 0)
  })
})
