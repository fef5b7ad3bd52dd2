/**
 * Every example in examples/ is started and exercised here (the demo in
 * demo.test.ts). Each file is run as written, except that its ports are
 * swapped for port 0 on loopback and its target URLs for test servers; each
 * swap must find its text exactly once, so an edited example cannot silently
 * stop being the one tested.
 */
import assert from 'node:assert/strict'
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { type ClientHttp2Session, connect as connectHttp2 } from 'node:http2'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connect as connectTls, type PeerCertificate } from 'node:tls'
import pino from 'pino'
import { request } from 'undici'
import { Gateway } from '../../src/gateway.ts'
import { makeCertificates, type TestPki } from '../helpers/certs.ts'
import { ROOT } from '../helpers/cli.ts'
import { eventually } from '../helpers/eventually.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const EXAMPLES = join(ROOT, 'examples')
/** Where each example is exercised; the test below checks none is missing. */
const TESTED = {
  demo: 'demo.test.ts',
  basic: 'here',
  'load-balancing': 'here',
  tls: 'here',
  'ip-allowlist': 'here',
  workers: 'here',
}

interface RunningExample {
  gateway: Gateway
  dir: string
  url(listener?: string): string
  port(listener?: string): number
  stop(): Promise<void>
}

/** Copies examples/<name>/gatehouse.yaml to a temp folder with the swaps made, and starts it. */
async function startExample(
  name: string,
  swaps: [from: string, to: string][],
  prepare?: (dir: string) => Promise<void>,
): Promise<RunningExample> {
  let text = await readFile(join(EXAMPLES, name, 'gatehouse.yaml'), 'utf8')
  for (const [from, to] of swaps) {
    assert.equal(
      text.split(from).length,
      2,
      `examples/${name}/gatehouse.yaml has ${JSON.stringify(from)} once`,
    )
    text = text.replace(from, to)
  }
  const dir = await mkdtemp(join(tmpdir(), `gatehouse-example-${name}-`))
  // One serving thread unless the example sets workers: the tests check the order a balancer
  // gives, and each thread balances its own connections.
  const workers = /^workers:/m.test(text) ? '' : 'workers: 1\n'
  await writeFile(join(dir, 'gatehouse.yaml'), `${text}\naccessLog: off\n${workers}`)
  await prepare?.(dir)
  const gateway = await Gateway.start({
    configFile: join(dir, 'gatehouse.yaml'),
    env: {},
    logger: pino({ level: 'silent' }),
  })
  const port = (listener?: string) =>
    listener === undefined ? Object.values(gateway.ports())[0] : gateway.ports()[listener]
  return {
    gateway,
    dir,
    port,
    url: (listener) => `http://127.0.0.1:${port(listener)}`,
    stop: async () => {
      await gateway.stop(1000)
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** A listener line `port: N` -> port 0 on loopback (examples bind every interface or a fixed port). */
const loopback = (port: number): [string, string] => [
  `\n    port: ${port}\n`,
  `\n    port: 0\n    host: 127.0.0.1\n`,
]
const firstListener = (port: number): [string, string] => [
  `\n  - port: ${port}\n`,
  `\n  - port: 0\n    host: 127.0.0.1\n`,
]

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, json: JSON.parse(text) as Record<string, unknown> }
}

describe('examples', () => {
  it('each example has a gatehouse.yaml, a README.md and a test', async () => {
    const folders = (await readdir(EXAMPLES, { withFileTypes: true })).filter((d) => d.isDirectory())
    assert.deepEqual(folders.map((d) => d.name).sort(), Object.keys(TESTED).sort())
    for (const folder of folders) {
      const files = await readdir(join(EXAMPLES, folder.name))
      assert.ok(files.includes('gatehouse.yaml') && files.includes('README.md'), folder.name)
    }
  })

  describe('load-balancing', () => {
    const copies: Upstream[] = []
    let example: RunningExample
    before(async () => {
      for (const name of ['api-1', 'api-2', 'api-3']) copies.push(await startUpstream(name))
      example = await startExample('load-balancing', [
        firstListener(8080),
        ['http://127.0.0.1:9001', copies[0].url],
        ['http://127.0.0.1:9002', copies[1].url],
        ['http://127.0.0.1:9003', copies[2].url],
      ])
    })
    after(async () => {
      await example.stop()
      await Promise.all(copies.map((u) => u.close()))
    })

    it('spreads over the three copies and survives one dying with no client error', async () => {
      const seen = new Set<unknown>()
      for (let i = 0; i < 9; i++) seen.add((await get(`${example.url()}/api/items`)).json.name)
      assert.deepEqual([...seen].sort(), ['api-1', 'api-2', 'api-3'])
      await copies[1].close()
      const statuses: number[] = []
      const names = new Set<unknown>()
      for (let i = 0; i < 30; i++) {
        const res = await get(`${example.url()}/api/items`)
        statuses.push(res.status)
        names.add(res.json.name)
      }
      assert.deepEqual([...new Set(statuses)], [200], 'every request answered 200')
      assert.equal(names.has('api-2'), false)
    })
  })

  describe('workers', () => {
    const copies: Upstream[] = []
    let healthy = true
    let example: RunningExample
    before(async () => {
      copies.push(await startUpstream('api-1'))
      // api-2 answers its health check with 503 once told to.
      copies.push(
        await startUpstream('api-2', (req, res) => {
          if (req.url === '/healthz' && !healthy) res.writeHead(503).end()
          else res.writeHead(200, { 'content-type': 'application/json' }).end('{"name":"api-2"}')
        }),
      )
      example = await startExample('workers', [
        firstListener(8080),
        ['http://127.0.0.1:9001', copies[0].url],
        ['http://127.0.0.1:9002', copies[1].url],
      ])
    })
    after(async () => {
      await example.stop()
      await Promise.all(copies.map((u) => u.close()))
    })

    it('serves from two threads, and neither sends to a copy that failed its checks', async () => {
      const pool = example.gateway.workers
      assert.ok(pool !== null)
      assert.equal(pool.size, 2)
      const names = async () => {
        const seen = new Set<unknown>()
        for (let i = 0; i < 16; i++) {
          // A connection per request (`reset`), so the kernel picks a thread for each.
          const res = await request(`${example.url()}/api/items`, { reset: true })
          assert.equal(res.statusCode, 200)
          seen.add(((await res.body.json()) as { name: string }).name)
        }
        return seen
      }
      assert.deepEqual([...(await names())].sort(), ['api-1', 'api-2'])
      healthy = false
      const api2 = () => example.gateway.upstreamStates().api.find((t) => t.url === copies[1].url)
      await eventually(() => api2()?.healthy === false, { timeout: 10_000 })
      assert.deepEqual([...(await names())], ['api-1'])
    })
  })

  describe('basic', () => {
    const upstreams: Record<string, Upstream> = {}
    let example: RunningExample
    before(async () => {
      for (const name of ['users-1', 'users-2', 'orders-1', 'orders-2'])
        upstreams[name] = await startUpstream(name)
      example = await startExample('basic', [
        firstListener(8080),
        ['http://127.0.0.1:9001', upstreams['users-1'].url],
        ['http://127.0.0.1:9002', upstreams['users-2'].url],
        ['http://127.0.0.1:9101', upstreams['orders-1'].url],
        ['http://127.0.0.1:9102', upstreams['orders-2'].url],
      ])
    })
    after(async () => {
      await example.stop()
      await Promise.all(Object.values(upstreams).map((u) => u.close()))
    })

    it('takes the two users copies in turn, forwarding the whole path', async () => {
      const names: unknown[] = []
      for (let i = 0; i < 4; i++) {
        const res = await get(`${example.url()}/users/42`)
        assert.equal(res.status, 200)
        assert.equal(res.json.url, '/users/42')
        assert.equal(res.headers['x-frame-options'], undefined, 'no security headers on /users')
        names.push(res.json.name)
      }
      assert.deepEqual(names.sort(), ['users-1', 'users-1', 'users-2', 'users-2'])
    })

    it('sends orders 3:1 by weight, smoothly, with security headers', async () => {
      const names: unknown[] = []
      for (let i = 0; i < 8; i++) {
        const res = await get(`${example.url()}/orders`)
        assert.equal(res.status, 200)
        assert.equal(res.headers['x-frame-options'], 'DENY')
        assert.equal(res.headers['x-content-type-options'], 'nosniff')
        names.push(res.json.name)
      }
      const a = 'orders-1'
      const b = 'orders-2'
      assert.deepEqual(names, [a, a, b, a, a, a, b, a])
    })

    it('matches whole path segments only', async () => {
      const res = await get(`${example.url()}/usersx`)
      assert.equal(res.status, 404)
      assert.equal(res.json.code, 'GH_ROUTE_NOT_FOUND')
    })
  })

  describe('tls', () => {
    let pki: TestPki
    let api: Upstream
    let website: Upstream
    let example: RunningExample
    before(async () => {
      pki = await makeCertificates(['api.example.test', ['www.example.test', 'example.test']])
      api = await startUpstream('api')
      website = await startUpstream('website')
      example = await startExample(
        'tls',
        [
          loopback(8080),
          loopback(8443),
          ['http://127.0.0.1:9001', api.url],
          ['http://127.0.0.1:9002', website.url],
        ],
        // The certificates where the example expects them: certs/ beside the config file.
        async (dir) => {
          await mkdir(join(dir, 'certs'))
          for (const name of ['api.example.test', 'www.example.test']) {
            await copyFile(pki.certs[name].certFile, join(dir, 'certs', `${name}.crt`))
            await copyFile(pki.certs[name].keyFile, join(dir, 'certs', `${name}.key`))
          }
        },
      )
    })
    after(async () => {
      await example.stop()
      await Promise.all([api.close(), website.close(), pki.remove()])
    })

    /** The certificate and ALPN protocol the edge listener answers a handshake with. */
    function handshake(servername: string | undefined) {
      return new Promise<{ cert: PeerCertificate; alpn: string | false }>((resolve, reject) => {
        const socket = connectTls({
          host: '127.0.0.1',
          port: example.port('edge'),
          ca: pki.ca.cert,
          ALPNProtocols: ['h2', 'http/1.1'],
          ...(servername === undefined ? { checkServerIdentity: () => undefined } : { servername }),
        })
        socket.once('secureConnect', () => {
          resolve({ cert: socket.getPeerCertificate(), alpn: socket.alpnProtocol ?? false })
          socket.destroy()
        })
        socket.once('error', reject)
      })
    }

    it('chooses the certificate by SNI name, the default one without', async () => {
      const apiHandshake = await handshake('api.example.test')
      assert.equal(apiHandshake.cert.subject.CN, 'api.example.test')
      assert.equal(apiHandshake.alpn, 'h2')
      assert.equal((await handshake('example.test')).cert.subject.CN, 'www.example.test')
      assert.equal((await handshake('www.example.test')).cert.subject.CN, 'www.example.test')
      assert.equal((await handshake(undefined)).cert.subject.CN, 'www.example.test')
    })

    it('routes HTTP/2 requests for api.example.test to the api service', async () => {
      const session: ClientHttp2Session = connectHttp2(`https://api.example.test:${example.port('edge')}`, {
        ca: pki.ca.cert,
        host: '127.0.0.1',
      })
      try {
        const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const stream = session.request({ ':path': '/v1/things?page=2' })
          let body = ''
          let status = 0
          stream.setEncoding('utf8')
          stream.on('response', (headers) => {
            status = Number(headers[':status'])
          })
          stream.on('data', (chunk: string) => {
            body += chunk
          })
          stream.on('end', () => resolve({ status, body }))
          stream.on('error', reject)
        })
        assert.equal(status, 200)
        const echoed = JSON.parse(body) as { name: string; url: string; headers: Record<string, string> }
        assert.equal(echoed.name, 'api')
        assert.equal(echoed.url, '/v1/things?page=2')
        assert.equal(echoed.headers['x-forwarded-proto'], 'https')
      } finally {
        session.close()
      }
    })

    it('routes HTTPS requests for the website, with HSTS, and answers other names with 404', async () => {
      const get = (host: string) =>
        new Promise<{ status: number; headers: Record<string, unknown>; body: Record<string, unknown> }>(
          (resolve, reject) => {
            const req = httpsRequest(
              {
                host: '127.0.0.1',
                port: example.port('edge'),
                servername: host === '127.0.0.1' ? undefined : host,
                ca: pki.ca.cert,
                checkServerIdentity: () => undefined,
                headers: { host },
                path: '/about',
                agent: false,
              },
              (res) => {
                let text = ''
                res.setEncoding('utf8').on('data', (chunk: string) => {
                  text += chunk
                })
                res.on('end', () =>
                  resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }),
                )
              },
            )
            req.on('error', reject)
            req.end()
          },
        )
      for (const host of ['www.example.test', 'example.test']) {
        const res = await get(host)
        assert.equal(res.status, 200)
        assert.equal(res.body.name, 'website')
        assert.equal(res.headers['strict-transport-security'], 'max-age=15552000; includeSubDomains')
        assert.equal(res.headers['x-frame-options'], 'DENY')
      }
      const unknown = await get('127.0.0.1')
      assert.equal(unknown.status, 404)
      assert.equal(unknown.body.code, 'GH_ROUTE_NOT_FOUND')
    })

    it('redirects plain HTTP to HTTPS on 8443', async () => {
      const res = await request(`${example.url('web')}/about?x=1`, { headers: { host: 'www.example.test' } })
      await res.body.dump()
      assert.equal(res.statusCode, 308)
      assert.equal(res.headers.location, 'https://www.example.test:8443/about?x=1')
      assert.equal(website.requests.filter((r) => r.url === '/about?x=1').length, 0)
    })
  })

  describe('ip-allowlist', () => {
    let publicApi: Upstream
    let adminApi: Upstream
    let example: RunningExample
    before(async () => {
      publicApi = await startUpstream('public-api')
      adminApi = await startUpstream('admin-api')
      example = await startExample('ip-allowlist', [
        firstListener(8080),
        // The test's own connections play the load balancer.
        ['trustedProxies: [10.0.0.2]', 'trustedProxies: [127.0.0.1]'],
        ['http://127.0.0.1:9001', publicApi.url],
        ['http://127.0.0.1:9002', adminApi.url],
      ])
    })
    after(async () => {
      await example.stop()
      await Promise.all([publicApi.close(), adminApi.close()])
    })

    it('lets everyone reach the public API', async () => {
      const res = await get(`${example.url()}/api/status`, { 'x-forwarded-for': '203.0.113.9' })
      assert.equal(res.status, 200)
      assert.equal(res.json.name, 'public-api')
    })

    it('lets the office network and the VPN reach the admin API', async () => {
      for (const client of ['192.168.10.7', '10.8.3.4', '198.51.100.1, 192.168.10.200']) {
        const res = await get(`${example.url()}/admin/users`, { 'x-forwarded-for': client })
        assert.equal(res.status, 200, client)
        assert.equal(res.json.name, 'admin-api')
      }
    })

    it('refuses everyone else, and the denied address inside the office range', async () => {
      const before = adminApi.requests.length
      for (const client of ['203.0.113.9', '192.168.10.66', '192.168.10.7, 203.0.113.9', undefined]) {
        const res = await get(
          `${example.url()}/admin/users`,
          client === undefined ? {} : { 'x-forwarded-for': client },
        )
        assert.equal(res.status, 403, String(client))
        assert.equal(res.headers['content-type'], 'application/problem+json')
        assert.equal(res.json.code, 'GH_FORBIDDEN')
        assert.equal(res.json.detail, 'The admin API is only reachable from the office network or the VPN')
      }
      assert.equal(adminApi.requests.length, before, 'nothing refused reached the admin API')
    })
  })
})
