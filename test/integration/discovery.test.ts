/**
 * Service discovery through a real gateway: a real DNS responder on loopback
 * (A records over 127.0.0.2 / 127.0.0.3 on one port, SRV with ports and
 * weights) and a watched targets file. A change reaches traffic, targets
 * that remain keep their upstream connections and state, a removed target
 * finishes the request it holds, and a bad file keeps the last good list.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { request } from 'undici'
import { type DnsServer, startDnsServer } from '../helpers/dns-server.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/** An upstream on a given loopback address that counts the connections it accepts and can hold /slow. */
interface Backend {
  readonly name: string
  readonly server: Server
  readonly port: number
  requests: number
  connections: number
  /** Answers of /slow requests held until the test releases them. */
  readonly held: (() => void)[]
  close(): Promise<void>
}

async function startBackend(name: string, host: string, port: number, holdSlow: boolean): Promise<Backend> {
  const sockets = new Set<Socket>()
  const backend: Backend = {
    name,
    server: createServer((req: IncomingMessage, res: ServerResponse) => {
      backend.requests++
      req.resume()
      req.on('end', () => {
        const answer = () => {
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ name }))
        }
        if (holdSlow && req.url === '/slow') backend.held.push(answer)
        else answer()
      })
    }),
    port: 0,
    requests: 0,
    connections: 0,
    held: [],
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        backend.server.close(() => resolve())
      }),
  }
  backend.server.on('connection', (socket) => {
    backend.connections++
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    backend.server.once('error', reject)
    backend.server.listen(port, host, resolve)
  })
  ;(backend as { port: number }).port = (backend.server.address() as AddressInfo).port
  return backend
}

async function nameOf(url: string): Promise<string> {
  const res = await request(url)
  assert.equal(res.statusCode, 200)
  return ((await res.body.json()) as { name: string }).name
}

/** Sequential GETs (one keep-alive connection per target suffices): the upstream names in order. */
async function names(url: string, count: number): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < count; i++) out.push(await nameOf(url))
  return out
}

describe('DNS discovery (A records)', () => {
  let dns: DnsServer
  let a: Backend
  let b: Backend
  let gw: TestGateway

  before(async () => {
    // A records carry no port: one port, two loopback addresses (Linux routes 127/8 to lo).
    a = await startBackend('a', '127.0.0.2', 0, false)
    b = await startBackend('b', '127.0.0.3', a.port, true)
    dns = await startDnsServer({ 'api.test': { A: ['127.0.0.2'], ttl: 1 } })
    gw = await startGateway(`
listeners: [{port: 0}]
services:
  api:
    discovery: {dns: {name: api.test, port: ${a.port}, servers: ["${dns.address}"], interval: 30s}}
routes: [{path: /, service: api}]
`)
  })

  after(async () => {
    await gw?.stop()
    await Promise.all([a?.close(), b?.close(), dns?.close()])
  })

  it('serves the targets of the first resolution from the start', async () => {
    assert.deepEqual(await names(gw.url(), 3), ['a', 'a', 'a'])
    assert.deepEqual(
      gw.gateway.upstreamStates().api.map((t) => t.url),
      [`http://127.0.0.2:${a.port}`],
    )
  })

  it('sends traffic to an added address within the TTL; a remaining target keeps its connection and state', async () => {
    const before = gw.gateway.runtime.services.get('api')!.targets[0]
    const connectionsBefore = a.connections
    dns.records.set('api.test', { A: ['127.0.0.2', '127.0.0.3'], ttl: 1 })
    await eventually(async () => (await nameOf(gw.url())) === 'b', { timeout: 10_000, interval: 100 })
    const seen = await names(gw.url(), 6)
    assert.equal(seen.filter((n) => n === 'a').length, 3)
    assert.equal(seen.filter((n) => n === 'b').length, 3)
    // Same pool and TargetState object: connections, health and load carried over.
    const kept = gw.gateway.runtime.services.get('api')!.targets.find((t) => t.url === before.url)!
    assert.equal(kept.state, before.state)
    assert.equal(kept.pool, before.pool)
    assert.equal(a.connections, connectionsBefore)
    assert.deepEqual(
      gw.gateway.upstreamStates().api.map((t) => [t.url, t.weight, t.healthy]),
      [
        [`http://127.0.0.2:${a.port}`, 1, true],
        [`http://127.0.0.3:${a.port}`, 1, true],
      ],
    )
  })

  it('stops sending new requests to a removed address; its request in flight completes', async () => {
    // Two at once over round robin: one to each; b holds its /slow.
    const slow = [request(`${gw.url()}/slow`), request(`${gw.url()}/slow`)]
    await eventually(() => b.held.length === 1, { timeout: 10_000 })
    dns.records.set('api.test', { A: ['127.0.0.2'], ttl: 1 })
    await eventually(() => gw.gateway.upstreamStates().api.length === 1, { timeout: 10_000, interval: 50 })
    const bRequests = b.requests
    assert.deepEqual(await names(gw.url(), 4), ['a', 'a', 'a', 'a'])
    assert.equal(b.requests, bRequests)
    b.held.shift()!()
    const answered = await Promise.all(
      slow.map(async (pending) => {
        const res = await pending
        assert.equal(res.statusCode, 200)
        return ((await res.body.json()) as { name: string }).name
      }),
    )
    assert.deepEqual(answered.sort(), ['a', 'b'])
  })

  it('keeps the last list when the DNS server fails, empties it on NXDOMAIN', async () => {
    dns.failing = true
    const asked = dns.queries.get('api.test A') ?? 0
    await eventually(() => (dns.queries.get('api.test A') ?? 0) >= asked + 1, { timeout: 10_000 })
    assert.deepEqual(await names(gw.url(), 2), ['a', 'a'])
    dns.failing = false
    dns.records.delete('api.test')
    await eventually(
      async () => {
        const res = await request(gw.url())
        const body = (await res.body.json()) as { code?: string }
        return res.statusCode === 503 && body.code === 'GH_NO_TARGET'
      },
      { timeout: 15_000, interval: 100 },
    )
    assert.deepEqual(gw.gateway.upstreamStates().api, [])
    dns.records.set('api.test', { A: ['127.0.0.2'], ttl: 1 })
  })
})

describe('DNS discovery (SRV records)', () => {
  let dns: DnsServer
  let one: Upstream
  let two: Upstream
  let three: Upstream
  let gw: TestGateway

  before(async () => {
    one = await startUpstream('one')
    two = await startUpstream('two')
    three = await startUpstream('three')
    dns = await startDnsServer({
      '_http._tcp.api.test': {
        SRV: [
          { priority: 10, weight: 3, port: one.port, target: 'host.test' },
          { priority: 10, weight: 0, port: two.port, target: 'host.test' },
          { priority: 20, weight: 1, port: three.port, target: 'host.test' },
        ],
      },
      'host.test': { A: ['127.0.0.1'], ttl: 1 },
    })
    gw = await startGateway(`
listeners: [{port: 0}]
services:
  api:
    discovery: {dns: {name: _http._tcp.api.test, type: SRV, servers: ["${dns.address}"], interval: 1s}}
routes: [{path: /, service: api}]
`)
  })

  after(async () => {
    await gw?.stop()
    await Promise.all([one?.close(), two?.close(), three?.close(), dns?.close()])
  })

  it('takes ports and weights from the lowest priority (weight 0 counts as 1)', async () => {
    assert.deepEqual(
      gw.gateway.upstreamStates().api.map((t) => [t.url, t.weight]),
      [
        [one.url, 3],
        [two.url, 1],
      ].sort(([x], [y]) => String(x).localeCompare(String(y))),
    )
    const seen = await names(gw.url(), 8)
    assert.equal(seen.filter((n) => n === 'one').length, 6)
    assert.equal(seen.filter((n) => n === 'two').length, 2)
  })

  it('follows a change of the records', async () => {
    dns.records.set('_http._tcp.api.test', {
      SRV: [{ priority: 5, weight: 1, port: three.port, target: 'host.test' }],
    })
    await eventually(async () => (await nameOf(gw.url())) === 'three', { timeout: 10_000, interval: 100 })
    assert.deepEqual(await names(gw.url(), 3), ['three', 'three', 'three'])
    assert.deepEqual(
      gw.gateway.upstreamStates().api.map((t) => t.url),
      [three.url],
    )
  })
})

describe('file discovery', () => {
  let one: Upstream
  let two: Upstream
  let gw: TestGateway
  let targetsFile: string
  const logs: string[] = []

  before(async () => {
    one = await startUpstream('one')
    two = await startUpstream('two')
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logs.push(String(chunk))
        done()
      },
    })
    gw = await startGateway(
      `
listeners: [{port: 0}]
services:
  api:
    discovery: {file: {path: targets.yaml}}
routes: [{path: /, service: api}]
`,
      {},
      { logger: pino({ level: 'info' }, sink) },
    )
    targetsFile = join(gw.dir, 'targets.yaml')
  })

  after(async () => {
    await gw?.stop()
    await Promise.all([one?.close(), two?.close()])
  })

  it('serves 503 GH_NO_TARGET while the file is missing, then what the file lists', async () => {
    const res = await request(gw.url())
    assert.equal(res.statusCode, 503)
    assert.equal(((await res.body.json()) as { code: string }).code, 'GH_NO_TARGET')
    await writeFile(targetsFile, `- ${one.url}\n`)
    await eventually(async () => (await request(gw.url())).statusCode === 200, { timeout: 10_000 })
    assert.deepEqual(await names(gw.url(), 2), ['one', 'one'])
  })

  it('follows an edit of the file', async () => {
    await writeFile(targetsFile, `- ${one.url}\n- {url: "${two.url}", weight: 2}\n`)
    await eventually(async () => (await nameOf(gw.url())) === 'two', { timeout: 10_000, interval: 50 })
    assert.deepEqual(
      gw.gateway.upstreamStates().api.map((t) => [t.url, t.weight]),
      [
        [one.url, 1],
        [two.url, 2],
      ],
    )
  })

  it('refuses a bad file with its line numbers and keeps serving the last good list', async () => {
    await writeFile(
      targetsFile,
      `- ${one.url}\n- {url: "${one.url}", weight: -1}\n- {url: "${two.url}", wieght: 2}\n`,
    )
    const refused = await eventually(
      () => {
        const line = logs.find((l) => l.includes('discovery file refused'))
        assert.ok(line)
        return line
      },
      { timeout: 10_000 },
    )
    assert.match(refused, /targets\.yaml:2:/)
    assert.match(refused, /targets\.yaml:3:/)
    const seen = await names(gw.url(), 6)
    assert.ok(seen.includes('one') && seen.includes('two'))
    assert.equal(gw.gateway.upstreamStates().api.length, 2)
  })

  it('keeps discovered targets across a config reload that leaves discovery alone', async () => {
    const version = gw.gateway.runtime.version
    await gw.write(`
listeners: [{port: 0}]
services:
  api:
    discovery: {file: {path: targets.yaml}}
    balancer: least-connections
routes: [{path: /, service: api}]
`)
    const result = await gw.gateway.reload()
    assert.equal(result.ok, true)
    assert.ok(gw.gateway.runtime.version > version)
    assert.equal(gw.gateway.upstreamStates().api.length, 2)
    assert.equal((await request(gw.url())).statusCode, 200)
  })
})
