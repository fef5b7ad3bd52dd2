/**
 * The access log: one JSON line per request, to a file, stdout (default) or
 * nowhere; a reload that changes it switches files; stop flushes it.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import type { AccessLogLine } from '../../src/observability/access-log.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const FIELDS = [
  'time',
  'reqId',
  'method',
  'host',
  'path',
  'route',
  'status',
  'bytes',
  'durationMs',
  'client',
  'upstream',
  'upstreamMs',
]

async function readLines(file: string): Promise<AccessLogLine[]> {
  const text = await readFile(file, 'utf8')
  assert.ok(text.endsWith('\n'), 'the last line is complete')
  return text
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as AccessLogLine)
}

describe('access log to a file', () => {
  let app: Upstream
  let dir: string
  let gw: TestGateway
  const held: ServerResponse[] = []
  const config = (accessLog: string) => `
listeners: [{port: 0, host: 127.0.0.1}]
services: {app: {targets: [${app.url}]}}
global: {trustedProxies: [127.0.0.1]}
routes:
  - {name: api, path: /api, service: app}
  - {name: teapot, path: /teapot, respond: {status: 418, body: short and stout}}
accessLog: ${accessLog}
`
  before(async () => {
    app = await startUpstream('app', (req, res) => {
      if (req.url === '/api/hang') {
        held.push(res)
        return
      }
      req.resume()
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('0123456789')
    })
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-access-'))
    gw = await startGateway(config(`{file: ${join(dir, 'logs', 'first.log')}}`))
  })
  after(async () => {
    for (const res of held) res.destroy()
    await gw.stop()
    await app.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('writes one line per request with every field, switches files on reload, stops on off, flushes at stop', async () => {
    const get = async (path: string, headers: Record<string, string> = {}) => {
      const res = await request(`${gw.url()}${path}`, { headers })
      await res.body.dump()
      return res
    }
    await get('/api/users?page=2', { 'x-request-id': 'log-1', 'x-forwarded-for': '203.0.113.9' })
    await get('/nowhere', { 'x-request-id': 'log-2' })
    await get('/teapot', { 'x-request-id': 'log-3' })
    // A client that leaves before the answer is logged too.
    const controller = new AbortController()
    const abandoned = request(`${gw.url()}/api/hang`, {
      headers: { 'x-request-id': 'log-4' },
      signal: controller.signal,
    }).catch(() => {})
    await eventually(() => held.length === 1)
    controller.abort()
    await abandoned
    await eventually(() => gw.gateway.runtime.inflight === 0)

    await gw.write(config(`{file: ${join(dir, 'second.log')}}`))
    assert.equal((await gw.gateway.reload()).ok, true)
    await get('/api/after-reload', { 'x-request-id': 'log-5' })
    await gw.write(config('off'))
    assert.equal((await gw.gateway.reload()).ok, true)
    await get('/api/unlogged', { 'x-request-id': 'log-6' })
    await gw.stop()

    const first = await readLines(join(dir, 'logs', 'first.log'))
    assert.deepEqual(
      first.map((l) => l.reqId),
      ['log-1', 'log-2', 'log-3', 'log-4'],
    )
    for (const line of first)
      for (const field of FIELDS) assert.ok(field in line, `${line.reqId} has ${field}`)
    const [proxied, missing, local, aborted] = first

    assert.equal(proxied.method, 'GET')
    assert.equal(proxied.host, '127.0.0.1')
    assert.equal(proxied.path, '/api/users')
    assert.equal(proxied.route, 'api')
    assert.equal(proxied.status, 200)
    assert.equal(proxied.bytes, 10)
    assert.equal(proxied.client, '203.0.113.9', 'the client as the trusted proxy tells it')
    assert.equal(proxied.upstream, app.url)
    assert.equal(typeof proxied.upstreamMs, 'number')
    assert.ok(proxied.upstreamMs! >= 0 && proxied.upstreamMs! <= proxied.durationMs)
    assert.ok(!Number.isNaN(Date.parse(proxied.time)))
    assert.ok(Math.abs(Date.parse(proxied.time) - Date.now()) < 60_000)
    assert.equal(proxied.error, undefined)
    assert.equal(proxied.aborted, undefined)

    assert.equal(missing.status, 404)
    assert.equal(missing.route, null)
    assert.equal(missing.upstream, null)
    assert.equal(missing.upstreamMs, null)
    assert.equal(missing.error, 'GH_ROUTE_NOT_FOUND')
    assert.equal(missing.client, '127.0.0.1')
    assert.ok(missing.bytes > 0)

    assert.equal(local.status, 418)
    assert.equal(local.route, 'teapot')
    assert.equal(local.bytes, 'short and stout'.length)

    assert.equal(aborted.path, '/api/hang')
    assert.equal(aborted.status, 0)
    assert.equal(aborted.aborted, true)
    assert.equal(aborted.upstream, app.url)

    const second = await readLines(join(dir, 'second.log'))
    assert.deepEqual(
      second.map((l) => [l.reqId, l.path, l.status]),
      [['log-5', '/api/after-reload', 200]],
    )
  })
})

describe('access log config', () => {
  it('refuses to start when the file cannot be opened', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gatehouse-access-'))
    try {
      // A regular file where a folder should be: ENOTDIR even for root.
      await writeFile(join(dir, 'not-a-dir'), '')
      await assert.rejects(
        startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
routes: []
accessLog: {file: ${join(dir, 'not-a-dir', 'access.log')}}
`),
        /cannot open the access log .*not-a-dir/,
      )
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('access log to stdout (the default), through the CLI', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-stdout-'))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('prints one JSON line per request on stdout, and the last one before exiting on SIGTERM', async () => {
    const file = join(dir, 'gatehouse.yaml')
    await writeFile(
      file,
      'listeners: [{name: web, port: 0, host: 127.0.0.1}]\nroutes: [{name: hello, path: /hello, respond: {status: 200, body: hi}}]\n',
    )
    const child = spawn(process.execPath, ['bin/gatehouse.js', 'start', '-c', file], {
      cwd: new URL('../..', import.meta.url),
      env: { ...process.env, GATEHOUSE_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk
    })
    const exited = once(child, 'exit')
    try {
      const port = await eventually(
        () => {
          assert.equal(child.exitCode, null, `the gateway exited early:\n${stderr}`)
          const started = stderr
            .split('\n')
            .filter((line) => line.includes('gatehouse started'))
            .map((line) => JSON.parse(line) as { listeners: Record<string, number> })[0]
          return started === undefined ? false : started.listeners.web
        },
        { timeout: 20_000 },
      ).catch((error: Error) => {
        throw new Error(`${error.message}\nstderr so far:\n${stderr}`)
      })
      for (const id of ['cli-1', 'cli-2']) {
        const res = await request(`http://127.0.0.1:${port}/hello`, { headers: { 'x-request-id': id } })
        assert.equal(await res.body.text(), 'hi')
      }
      child.kill('SIGTERM')
      const [code] = await exited
      assert.equal(code, 0, stderr)
      const lines = stdout
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as AccessLogLine)
      assert.deepEqual(
        lines.map((l) => [l.reqId, l.route, l.status, l.bytes]),
        [
          ['cli-1', 'hello', 200, 2],
          ['cli-2', 'hello', 200, 2],
        ],
      )
      // The gateway's own log goes to stderr, never mixed into the access log.
      assert.match(stderr, /gatehouse started/)
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })
})
