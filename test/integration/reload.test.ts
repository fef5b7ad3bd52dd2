import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { type AddressInfo, createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { Pool, request } from 'undici'
import { ConfigError } from '../../src/config/index.ts'
import { Gateway, type ReloadResult } from '../../src/gateway.ts'
import { killCli, type StartedCli, startCli } from '../helpers/cli.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { connectResult } from '../helpers/http.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

async function getJson(
  url: string,
): Promise<{ status: number; body: { name?: string } & Record<string, unknown> }> {
  const res = await request(url)
  const text = await res.body.text()
  return { status: res.statusCode, body: text.startsWith('{') ? JSON.parse(text) : { text } }
}

describe('reload through the CLI', () => {
  let a: Upstream
  let b: Upstream
  let dir: string
  let cli: StartedCli | undefined
  const config = (upstream: Upstream, extra = '') => `
listeners:
  - port: 0
    host: 127.0.0.1
services:
  svc:
    targets: [${upstream.url}]
routes:
  - path: /svc
    service: svc
${extra}
accessLog: off
`
  before(async () => {
    a = await startUpstream('a')
    b = await startUpstream('b')
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-reload-'))
  })
  after(async () => {
    await killCli(cli)
    await Promise.all([a.close(), b.close()])
    await rm(dir, { recursive: true, force: true })
  })

  it('reloads on SIGHUP, and refuses an invalid file with file:line:column while the old config serves', async () => {
    const file = join(dir, 'sighup.yaml')
    await writeFile(file, config(a))
    // --no-watch: only the signal can cause the reload seen here.
    cli = await startCli(file, { args: ['--no-watch'] })
    const base = `http://127.0.0.1:${cli.port()}`
    assert.equal((await getJson(`${base}/svc`)).body.name, 'a')

    await writeFile(file, config(b))
    cli.signal('SIGHUP')
    const reloaded = await cli.waitForLog('configuration reloaded')
    assert.equal(reloaded.version, 2)
    assert.equal((await getJson(`${base}/svc`)).body.name, 'b')

    await writeFile(file, config(b, '  - path: /typo\n    service: svx\n'))
    cli.signal('SIGHUP')
    const refused = await cli.waitForLog('reload refused')
    assert.match(refused.msg, /still serving version 2/)
    assert.match(
      refused.msg,
      new RegExp(`${file.replaceAll('.', '\\.')}:12:14 routes\\[1\\]\\.service: .*svx`),
    )
    const problems = refused.problems as { line: number; column: number; path: string }[]
    assert.deepEqual(
      problems.map((p) => [p.line, p.column, p.path]),
      [[12, 14, 'routes[1].service']],
    )
    const after = await getJson(`${base}/svc`)
    assert.equal(after.status, 200)
    assert.equal(after.body.name, 'b')

    cli.signal('SIGTERM')
    assert.deepEqual(await cli.exited, { code: 0, signal: null })
    cli = undefined
  })

  it('reloads when the file changes, also when an editor replaces it by renaming', async () => {
    const file = join(dir, 'watched.yaml')
    await writeFile(file, config(a))
    cli = await startCli(file)
    const base = `http://127.0.0.1:${cli.port()}`
    assert.equal((await getJson(`${base}/svc`)).body.name, 'a')

    await writeFile(file, config(b))
    await cli.waitForLog('configuration reloaded', (l) => l.version === 2)
    assert.equal((await getJson(`${base}/svc`)).body.name, 'b')

    const temporary = join(dir, '.watched.yaml.swp')
    await writeFile(temporary, config(a))
    await rename(temporary, file)
    await cli.waitForLog('configuration reloaded', (l) => l.version === 3)
    assert.equal((await getJson(`${base}/svc`)).body.name, 'a')

    cli.signal('SIGTERM')
    assert.equal((await cli.exited).code, 0)
    cli = undefined
  })
})

describe('reload semantics', () => {
  it('lets a request in flight finish on the snapshot it started on', async () => {
    const held: ServerResponse[] = []
    const slow = await startUpstream('slow', (req, res) => {
      req.resume()
      held.push(res)
    })
    const gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
services:
  slow-service:
    targets: [${slow.url}]
routes:
  - path: /work
    service: slow-service
`)
    try {
      const inFlight = getJson(`${gw.url()}/work`)
      await eventually(() => held.length === 1)

      // The new config sends /work elsewhere and drops the service (so its pool is retired).
      await gw.write(`
listeners:
  - port: 0
    host: 127.0.0.1
routes:
  - path: /work
    respond:
      body: { answer: new }
`)
      const result = await gw.gateway.reload()
      assert.equal(result.ok, true)
      assert.deepEqual((await getJson(`${gw.url()}/work`)).body, { answer: 'new' })

      held[0].writeHead(200, { 'content-type': 'application/json' })
      held[0].end(JSON.stringify({ name: 'slow', answer: 'old' }))
      const old = await inFlight
      assert.equal(old.status, 200)
      assert.deepEqual(old.body, { name: 'slow', answer: 'old' })
      assert.equal(slow.requests.length, 1)
    } finally {
      await gw.stop()
      await slow.close()
    }
  })

  it('sees a Kubernetes-style ConfigMap update (a symlink swapped in the folder)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-configmap-'))
    const config = (body: string) => `
listeners:
  - port: 0
    host: 127.0.0.1
routes:
  - path: /
    respond: { body: ${body} }
accessLog: off
`
    // The layout kubelet makes: gatehouse.yaml -> ..data/gatehouse.yaml, ..data -> a versioned folder.
    await mkdir(join(dir, 'v1'))
    await writeFile(join(dir, 'v1', 'gatehouse.yaml'), config('first'))
    await symlink('v1', join(dir, '..data'))
    await symlink(join('..data', 'gatehouse.yaml'), join(dir, 'gatehouse.yaml'))
    const gateway = await Gateway.start({
      configFile: join(dir, 'gatehouse.yaml'),
      env: {},
      logger: pino({ level: 'silent' }),
    })
    try {
      gateway.watch(50)
      const url = `http://127.0.0.1:${Object.values(gateway.ports())[0]}/`
      assert.equal((await getJson(url)).body.text, 'first')
      // An update: a new folder, a temporary link to it, renamed over ..data (no event names gatehouse.yaml).
      await mkdir(join(dir, 'v2'))
      await writeFile(join(dir, 'v2', 'gatehouse.yaml'), config('second'))
      await symlink('v2', join(dir, '..data_tmp'))
      await rename(join(dir, '..data_tmp'), join(dir, '..data'))
      await eventually(async () => (await getJson(url)).body.text === 'second')
      assert.equal(gateway.runtime.version, 2)
    } finally {
      await gateway.stop(1000)
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('reads the file again for a reload asked for while one runs', async () => {
    const config = (body: string) => `
listeners:
  - port: 0
    host: 127.0.0.1
routes:
  - path: /
    respond: { body: ${body} }
`
    const gw = await startGateway(config('one'))
    try {
      await gw.write(config('two'))
      const first = gw.gateway.reload()
      // Asked for while `first` runs: a second reload after it, shared by every call made meanwhile.
      const second = gw.gateway.reload()
      assert.notEqual(first, second)
      assert.equal(gw.gateway.reload(), second)
      const [a, b] = await Promise.all([first, second])
      assert.ok(a.ok && b.ok)
      assert.equal(b.version, a.version + 1)
      assert.equal(gw.gateway.runtime.version, 3)
      assert.equal((await getJson(gw.url())).body.text, 'two')
    } finally {
      await gw.stop()
    }
  })

  it('keeps upstream connections across reloads that do not change the service', async () => {
    const upstream = await startUpstream('kept')
    upstream.server.keepAliveTimeout = 60_000
    let accepted = 0
    upstream.server.on('connection', () => accepted++)
    const config = (variant: string, pool = '') => `
listeners:
  - port: 0
    host: 127.0.0.1
services:
  kept:
    targets: [${upstream.url}]
    pool: { keepAliveTimeout: 60s ${pool} }
${variant}
routes:
  - path: /kept
    service: kept
  - path: /info
    respond: { body: "${variant.length}" }
`
    const variants = [
      '',
      'plugins:\n  security-headers: {}\nglobal:\n  plugins: [security-headers]',
      `  other:\n    targets: [http://127.0.0.1:9]`,
      'global:\n  requestIdHeader: x-trace-id',
      'global:\n  hideUpstreamHeaders: [x-powered-by]',
    ]
    const gw = await startGateway(config(variants[0]))
    const hit = async () => {
      for (let i = 0; i < 3; i++) assert.equal((await getJson(`${gw.url()}/kept`)).status, 200)
    }
    try {
      await hit()
      assert.equal(accepted, 1)
      for (const variant of [...variants.slice(1), ...variants.slice(1)]) {
        await gw.write(config(variant))
        assert.equal((await gw.gateway.reload()).ok, true)
        await hit()
      }
      assert.equal(gw.gateway.runtime.version, 9)
      assert.equal(accepted, 1, 'the pool and its connection survived 8 reloads')

      // A change to the pool's own definition makes a new pool (and a new connection).
      await gw.write(config('', ', connections: 4'))
      assert.equal((await gw.gateway.reload()).ok, true)
      await hit()
      assert.equal(accepted, 2)
    } finally {
      await gw.stop()
      await upstream.close()
    }
  })

  describe('under load', () => {
    let u1: Upstream
    let u2: Upstream
    let gw: TestGateway
    let client: Pool
    // A: both targets, no plugin. B: one target, security headers, an extra route.
    const configA = () => `
listeners:
  - port: 0
    host: 127.0.0.1
services:
  svc:
    targets: [${u1.url}, ${u2.url}]
routes:
  - path: /load
    service: svc
`
    const configB = () => `
listeners:
  - port: 0
    host: 127.0.0.1
services:
  svc:
    targets: [${u2.url}]
routes:
  - path: /load
    service: svc
    plugins: [security-headers]
  - path: /b-only
    respond: { body: b }
`
    before(async () => {
      u1 = await startUpstream('u1')
      u2 = await startUpstream('u2')
      gw = await startGateway(configA())
      client = new Pool(gw.url(), { connections: 16 })
    })
    after(async () => {
      await client.close()
      await gw.stop()
      await Promise.all([u1.close(), u2.close()])
    })

    /** `total` GETs of /load, 16 at a time over keep-alive; `at(n)` runs after the n-th completes. */
    async function load(total: number, at: (completed: number) => void) {
      const statuses = new Map<number | string, number>()
      const names = new Map<string, number>()
      let framed = 0
      let started = 0
      let completed = 0
      const worker = async () => {
        while (started < total) {
          started++
          let key: number | string
          try {
            const res = await client.request({ path: '/load', method: 'GET' })
            const body = (await res.body.json()) as { name: string }
            key = res.statusCode
            names.set(body.name, (names.get(body.name) ?? 0) + 1)
            if (res.headers['x-frame-options'] === 'DENY') framed++
          } catch (error) {
            key = (error as NodeJS.ErrnoException).code ?? String(error)
          }
          statuses.set(key, (statuses.get(key) ?? 0) + 1)
          at(++completed)
        }
      }
      await Promise.all(Array.from({ length: 16 }, worker))
      return { statuses, names, framed }
    }

    it('serves 2000 requests across 20 reloads without one failure', async () => {
      let reloads = Promise.resolve()
      const results: boolean[] = []
      let written = 0
      const outcome = await load(2000, (completed) => {
        if (completed % 100 !== 50) return
        // Reloads run one after another while the load goes on; the last one writes A.
        const text = written++ % 2 === 0 ? configB() : configA()
        reloads = reloads.then(async () => {
          await gw.write(text)
          results.push((await gw.gateway.reload()).ok)
        })
      })
      await reloads
      assert.deepEqual([...outcome.statuses], [[200, 2000]])
      assert.equal(results.length, 20)
      assert.ok(results.every(Boolean))
      assert.equal(gw.gateway.runtime.version, 21)
      assert.ok((outcome.names.get('u1') ?? 0) > 0 && (outcome.names.get('u2') ?? 0) > 0)
    })

    it('refuses an invalid file while traffic continues on the old config', async () => {
      const before = gw.gateway.runtime.version
      let refused: Promise<ReloadResult> | undefined
      const outcome = await load(600, (completed) => {
        if (completed !== 200) return
        refused = gw
          .write(`${configB()}\n  - path: /broken\n    service: nowhere\n`)
          .then(() => gw.gateway.reload())
      })
      const result = await refused!
      assert.equal(result.ok, false)
      assert.ok(!result.ok && result.error instanceof ConfigError)
      assert.match(result.error.message, /gatehouse\.yaml:\d+:\d+ routes\[2\]\.service: .*nowhere/)
      assert.deepEqual([...outcome.statuses], [[200, 600]])
      // Still config A: both targets, and no security headers (B would add them).
      assert.equal(outcome.framed, 0)
      assert.ok((outcome.names.get('u1') ?? 0) > 0 && (outcome.names.get('u2') ?? 0) > 0)
      assert.equal(gw.gateway.runtime.version, before)
    })
  })

  describe('listeners', () => {
    let gw: TestGateway
    let blocker: Server
    const main = (body: string) => `
listeners:
  - name: main
    port: 0
    host: 127.0.0.1
routes:
  - path: /
    respond: { body: ${body} }
`
    before(async () => {
      gw = await startGateway(main('v1'))
      blocker = createServer()
      await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    })
    after(async () => {
      await gw.stop()
      await new Promise((resolve) => blocker.close(resolve))
    })

    it('opens a listener a reload adds and closes one a reload removes', async () => {
      // The extra listener goes in the listeners list, before routes.
      await gw.write(
        main('v2').replace('routes:', '  - name: extra\n    port: 0\n    host: 127.0.0.1\nroutes:'),
      )
      assert.equal((await gw.gateway.reload()).ok, true)
      const extraPort = gw.port('extra')
      assert.ok(extraPort > 0)
      assert.equal((await getJson(`http://127.0.0.1:${extraPort}/`)).body.text, 'v2')
      assert.equal((await getJson(gw.url('main'))).body.text, 'v2')

      await gw.write(main('v3'))
      assert.equal((await gw.gateway.reload()).ok, true)
      assert.deepEqual(Object.keys(gw.gateway.ports()), ['main'])
      await eventually(async () => (await connectResult(extraPort)) === 'ECONNREFUSED')
      assert.equal((await getJson(gw.url('main'))).body.text, 'v3')
    })

    it('refuses a reload whose new listener port is taken and leaves everything as it was', async () => {
      const before = { ports: gw.gateway.ports(), version: gw.gateway.runtime.version }
      const taken = (blocker.address() as AddressInfo).port
      await gw.write(
        main('v4').replace('routes:', `  - name: taken\n    port: ${taken}\n    host: 127.0.0.1\nroutes:`),
      )
      const result = await gw.gateway.reload()
      assert.equal(result.ok, false)
      assert.equal(!result.ok && (result.error as NodeJS.ErrnoException).code, 'EADDRINUSE')
      assert.deepEqual(gw.gateway.ports(), before.ports)
      assert.equal(gw.gateway.runtime.version, before.version)
      assert.equal((await getJson(gw.url('main'))).body.text, 'v3')
    })
  })
})
