/**
 * Bodies stream through the gateway: 200 MiB each way arrive whole while the
 * gateway's memory does not grow with them, and a stalled reader on one side
 * stalls the writer on the other (backpressure). Then the framing cases a proxy gets
 * wrong: HEAD, 204, 304, Content-Length kept, chunked, trailers.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { type AddressInfo, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { rawRequest, statusOf } from '../helpers/raw.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const MiB = 1024 * 1024
const TOTAL = 200 * MiB
const CHUNK = Buffer.alloc(64 * 1024, 'x')
/** The reader stops reading here to show that the writer is held back. */
const PAUSE_AT = 8 * MiB
/**
 * Bytes between a writer and a stalled reader: kernel socket buffers on two
 * connections and a few stream buffers (about 10 MiB measured on Linux).
 * Whole-body buffering would show the full 200 MiB.
 */
const IN_FLIGHT_MAX = 64 * MiB
/**
 * Peak RSS growth of the gateway over one 200 MiB transfer, the bar.
 * Every socket read is a fresh 64 KiB buffer, dead once relayed; without the
 * CLI's buffer valve (src/observability/buffer-valve.ts) V8 would collect them
 * only after 64 MiB of them built up (62-74 MiB measured); with it, 20-40 MiB.
 */
const RSS_GROWTH_MAX = 50 * MiB

describe('streaming 200 MiB through a gateway process', () => {
  let upstream: Upstream
  let gateway: ChildGateway
  const upload = { received: 0, pausedReq: null as IncomingMessage | null }
  const download = { written: 0 }

  before(async () => {
    upstream = await startUpstream('bulk', (req, res) => {
      if (req.url === '/upload') receiveUpload(req, res)
      else if (req.url === '/download') sendDownload(res)
      else res.end('warm')
    })
    gateway = await startChildGateway(`
listeners: [{name: main, port: 0, host: 127.0.0.1}]
services:
  bulk: {targets: ['${upstream.url}']}
routes:
  - {path: /, service: bulk, maxBodySize: 300mb}
accessLog: off
`)
    // Warm up (pool, JIT, lazy modules) before the baseline is taken.
    for (let i = 0; i < 20; i++) await (await request(`${gateway.url}/warm`)).body.text()
  })

  after(async () => {
    await gateway?.stop()
    await upstream?.close()
  })

  function receiveUpload(req: IncomingMessage, res: ServerResponse): void {
    upload.received = 0
    req.on('data', (chunk: Buffer) => {
      upload.received += chunk.length
      if (upload.pausedReq === null && upload.received >= PAUSE_AT) {
        upload.pausedReq = req
        req.pause()
      }
    })
    req.on('end', () => res.end(JSON.stringify({ bytes: upload.received })))
  }

  function sendDownload(res: ServerResponse): void {
    download.written = 0
    res.writeHead(200, { 'content-length': TOTAL, 'content-type': 'application/octet-stream' })
    const writeMore = () => {
      while (download.written < TOTAL) {
        download.written += CHUNK.length
        if (!res.write(CHUNK)) {
          res.once('drain', writeMore)
          return
        }
      }
      res.end()
    }
    writeMore()
  }

  it('streams a 200 MiB request body to the target, holding the client back while the target reads nothing', async () => {
    const baseline = gateway.startMeasuring()
    let produced = 0
    async function* body(): AsyncGenerator<Buffer> {
      while (produced < TOTAL) {
        produced += CHUNK.length
        yield CHUNK
      }
    }
    const answer = request(`${gateway.url}/upload`, {
      method: 'POST',
      headers: { 'content-length': String(TOTAL), 'content-type': 'application/octet-stream' },
      body: Readable.from(body(), { objectMode: false }),
    })
    await eventually(() => upload.pausedReq !== null, { timeout: 15_000 })
    await stalled(() => produced)
    const inFlight = produced - upload.received
    assert.ok(
      inFlight < IN_FLIGHT_MAX,
      `${inFlight} bytes were taken from the client while the target read none`,
    )
    upload.pausedReq!.resume()
    const res = await answer
    assert.equal(res.statusCode, 200)
    assert.deepEqual(await res.body.json(), { bytes: TOTAL })
    const growth = gateway.growthSince(baseline)
    assert.ok(growth < RSS_GROWTH_MAX, `gateway RSS grew by ${(growth / MiB).toFixed(1)} MiB`)
  })

  it('streams a 200 MiB response body to the client, holding the target back while the client reads nothing', async () => {
    const baseline = gateway.startMeasuring()
    const res = await request(`${gateway.url}/download`)
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-length'], String(TOTAL))
    const chunks = res.body[Symbol.asyncIterator]()
    let received = 0
    while (received < PAUSE_AT) received += ((await chunks.next()).value as Buffer).length
    await stalled(() => download.written)
    const inFlight = download.written - received
    assert.ok(
      inFlight < IN_FLIGHT_MAX,
      `${inFlight} bytes were taken from the target while the client read none`,
    )
    for (let next = await chunks.next(); !next.done; next = await chunks.next()) received += next.value.length
    assert.equal(received, TOTAL)
    const growth = gateway.growthSince(baseline)
    assert.ok(growth < RSS_GROWTH_MAX, `gateway RSS grew by ${(growth / MiB).toFixed(1)} MiB`)
  })
})

describe('response framing', () => {
  let upstream: Upstream
  let raw: RawUpstream
  let gw: TestGateway

  before(async () => {
    upstream = await startUpstream('framing', (req, res) => {
      req.resume()
      switch (req.url) {
        case '/length':
          res.writeHead(200, { 'content-length': '5', 'content-type': 'text/plain' })
          res.end(req.method === 'HEAD' ? undefined : 'hello')
          return
        case '/chunked':
          res.writeHead(200, { 'content-type': 'text/plain' })
          res.write('hello ')
          res.end('world')
          return
        case '/trailers':
          res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
          res.write('payload')
          res.addTrailers({ 'x-checksum': 'abc123', connection: 'x-secret', 'x-secret': 'hop' })
          res.end()
          return
        case '/no-content':
          res.writeHead(204, { 'x-kind': 'empty' })
          res.end()
          return
        default:
          res.writeHead(404)
          res.end()
      }
    })
    raw = await startRawUpstream({
      '/204-with-length': 'HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nx-kind: empty\r\n\r\n',
      '/304': 'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 50\r\n\r\n',
    })
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
services:
  framing: {targets: ['${upstream.url}']}
  raw: {targets: ['http://127.0.0.1:${raw.port}']}
routes:
  - {path: /204-with-length, service: raw}
  - {path: /304, service: raw}
  - {path: /, service: framing}
`)
  })

  after(async () => {
    await gw.stop()
    await Promise.all([upstream.close(), raw.close()])
  })

  /** Two requests on one connection: the second answer parses only if the first was framed right. */
  async function twoOnOneConnection(first: string): Promise<{ first: string; second: string }> {
    const result = await rawRequest(
      gw.port(),
      `${first} HTTP/1.1\r\nHost: gw\r\n\r\nGET /length HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n`,
    )
    const at = result.text.indexOf('HTTP/1.1', 1)
    assert.ok(at > 0, `one response only:\n${result.text}`)
    const second = result.text.slice(at)
    assert.equal(statusOf(second), 200)
    assert.match(second, /\r\n\r\nhello$/)
    return { first: result.text.slice(0, at), second }
  }

  it('keeps the target Content-Length instead of re-chunking', async () => {
    const res = await request(`${gw.url()}/length`)
    assert.equal(res.headers['content-length'], '5')
    assert.equal(res.headers['transfer-encoding'], undefined)
    assert.equal(await res.body.text(), 'hello')
  })

  it('answers HEAD with the head only: Content-Length kept, no body', async () => {
    const { first } = await twoOnOneConnection('HEAD /length')
    assert.equal(statusOf(first), 200)
    assert.match(first, /content-length: 5\r\n/i)
    assert.ok(first.endsWith('\r\n\r\n'), 'no body after the head')
  })

  it('relays a chunked body chunked', async () => {
    const result = await rawRequest(
      gw.port(),
      'GET /chunked HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n',
    )
    assert.match(result.text, /transfer-encoding: chunked/i)
    assert.match(result.text, /\r\n0\r\n\r\n$/)
    const res = await request(`${gw.url()}/chunked`)
    assert.equal(await res.body.text(), 'hello world')
  })

  it('sends a 204 without a body or Content-Length, even when the target sent one', async () => {
    for (const path of ['/no-content', '/204-with-length']) {
      const { first } = await twoOnOneConnection(`GET ${path}`)
      assert.equal(statusOf(first), 204, path)
      assert.match(first, /x-kind: empty/i)
      assert.doesNotMatch(first, /content-length|transfer-encoding/i, path)
      assert.ok(first.endsWith('\r\n\r\n'), `${path}: no body after the head`)
    }
  })

  it('sends a 304 without a body, keeping its Content-Length', async () => {
    const { first } = await twoOnOneConnection('GET /304')
    assert.equal(statusOf(first), 304)
    assert.match(first, /etag: "v1"/i)
    assert.match(first, /content-length: 50\r\n/i)
    assert.ok(first.endsWith('\r\n\r\n'), 'no body after the head')
  })

  it('relays trailer fields after the last chunk, without hop-by-hop ones', async () => {
    const result = await rawRequest(
      gw.port(),
      'GET /trailers HTTP/1.1\r\nHost: gw\r\nTE: trailers\r\nConnection: close\r\n\r\n',
    )
    assert.equal(statusOf(result.text), 200)
    assert.match(result.text, /\r\n7\r\npayload\r\n0\r\nx-checksum: abc123\r\n\r\n$/)
    assert.doesNotMatch(result.text, /x-secret/)
  })

  it('delimits a chunked body by closing the connection for an HTTP/1.0 client', async () => {
    const result = await rawRequest(gw.port(), 'GET /chunked HTTP/1.0\r\nHost: gw\r\n\r\n')
    assert.equal(result.closed, true)
    assert.doesNotMatch(result.text, /transfer-encoding/i)
    assert.ok(result.text.endsWith('\r\n\r\nhello world'))
  })
})

/** Waits until `count()` stops growing: the writer is held back by backpressure. */
async function stalled(count: () => number): Promise<void> {
  let last = -1
  await eventually(
    () => {
      const now = count()
      const same = now === last
      last = now
      return same
    },
    { interval: 150, timeout: 15_000 },
  )
}

interface ChildGateway {
  readonly url: string
  /** Starts tracking peak RSS from now; returns the current RSS in bytes. */
  startMeasuring(): number
  /** Peak RSS since startMeasuring() minus `baseline`, in bytes. */
  growthSince(baseline: number): number
  stop(): Promise<void>
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/**
 * `gatehouse start -c FILE` in a child process, so its memory is its own.
 * Peak RSS comes from the kernel: VmHWM after resetting it through
 * /proc/PID/clear_refs, or where that is refused, VmRSS sampled every 10 ms.
 */
async function startChildGateway(yaml: string): Promise<ChildGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-stream-'))
  const file = join(dir, 'gatehouse.yaml')
  await writeFile(file, yaml)
  const child = spawn(process.execPath, [join(ROOT, 'bin/gatehouse.js'), 'start', '-c', file], {
    env: { ...process.env, GATEHOUSE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let log = ''
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the gateway exited with ${code}:\n${log}`)))
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (text: string) => {
      log += text
      const started = /"listeners":\{[^}]*"main":(\d+)/.exec(log)
      if (started) resolve(Number(started[1]))
    })
  })
  const pid = child.pid!
  let sampler: NodeJS.Timeout | null = null
  let sampledPeak = 0
  let kernelPeak = false
  return {
    url: `http://127.0.0.1:${port}`,
    startMeasuring() {
      try {
        // "5" resets the peak RSS (VmHWM) to the current RSS (Linux Documentation/filesystems/proc.rst).
        writeFileSync(`/proc/${pid}/clear_refs`, '5')
        kernelPeak = true
      } catch {
        kernelPeak = false
      }
      const now = procStatus(pid, 'VmRSS')
      sampledPeak = now
      sampler ??= setInterval(() => {
        sampledPeak = Math.max(sampledPeak, procStatus(pid, 'VmRSS'))
      }, 10)
      return now
    },
    growthSince(baseline) {
      const peak = kernelPeak ? procStatus(pid, 'VmHWM') : Math.max(sampledPeak, procStatus(pid, 'VmRSS'))
      return peak - baseline
    },
    async stop() {
      if (sampler) clearInterval(sampler)
      child.kill('SIGTERM')
      await exited
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** A /proc/PID/status size field, in bytes. */
function procStatus(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)![1]) * 1024
}

interface RawUpstream {
  port: number
  close(): Promise<void>
}

/** A TCP server answering each request with the bytes given for its path, then closing. */
async function startRawUpstream(answers: Record<string, string>): Promise<RawUpstream> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.once('data', (chunk) => {
      const path = /^[A-Z]+ (\S+)/.exec(chunk.toString('latin1'))?.[1] ?? ''
      socket.end(answers[path] ?? 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
