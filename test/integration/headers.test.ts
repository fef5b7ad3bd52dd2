/**
 * Header hygiene both ways (RFC 9110 §7.6.1): hop-by-hop fields stay on
 * their hop; X-Forwarded-* and Forwarded (RFC 7239) are set, and incoming
 * ones believed only from trusted proxies; the request id goes up and comes
 * back; the target's Server / X-Powered-By stay hidden.
 */
import assert from 'node:assert/strict'
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { forwardedElement } from '../../src/proxy/headers.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { send } from '../helpers/http.ts'
import { rawRequest, statusOf } from '../helpers/raw.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

interface Echo {
  url: string
  headers: Record<string, string>
}

async function echoed(url: string, path: string, options?: Parameters<typeof send>[2]) {
  const reply = await send(url, path, options)
  assert.equal(reply.status, 200, reply.body)
  return { reply, seen: JSON.parse(reply.body) as Echo }
}

/** The body of a raw HTTP/1.1 response, chunked or not. */
function rawBody(text: string): string {
  const headEnd = text.indexOf('\r\n\r\n')
  let rest = text.slice(headEnd + 4)
  if (!/^transfer-encoding: chunked$/im.test(text.slice(0, headEnd))) return rest
  let body = ''
  for (;;) {
    const lineEnd = rest.indexOf('\r\n')
    const size = Number.parseInt(rest.slice(0, lineEnd), 16)
    if (!(size > 0)) return body
    body += rest.slice(lineEnd + 2, lineEnd + 2 + size)
    rest = rest.slice(lineEnd + 2 + size + 2)
  }
}

/** A target answering one fixed response head, whatever the request, so any header can be sent down. */
async function startFixedUpstream(head: string[]): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    let seen = ''
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1')
      if (!seen.includes('\r\n\r\n')) return
      seen = ''
      socket.write(`HTTP/1.1 200 OK\r\n${head.join('\r\n')}\r\ncontent-length: 2\r\n\r\nok`)
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

describe('header hygiene', () => {
  let echo: Upstream
  let fixed: Awaited<ReturnType<typeof startFixedUpstream>>
  /** No trusted proxies (the default). */
  let plain: TestGateway
  /** trustedProxies: [127.0.0.1], a custom request id header, a custom hidden list. */
  let trusting: TestGateway
  /** Listens on ::1, to see an IPv6 peer. */
  let ipv6: TestGateway

  const routes = (echoUrl: string, fixedUrl: string) => `
services:
  echo:
    targets: [${echoUrl}]
  fixed:
    targets: [${fixedUrl}]
routes:
  - path: /fixed
    service: fixed
  - path: /guarded
    service: echo
    plugins: [{name: ip-restriction, config: {deny: [198.51.100.7]}}]
  - path: /local
    respond: {status: 204}
  - path: /
    service: echo
`

  before(async () => {
    echo = await startUpstream('echo')
    fixed = await startFixedUpstream([
      'Connection: keep-alive, X-Hop-Down',
      'Keep-Alive: timeout=99, max=7',
      'X-Hop-Down: secret',
      'Proxy-Connection: keep-alive',
      'Proxy-Authenticate: Basic realm="upstream"',
      'Trailer: X-Checksum',
      'Upgrade: h2c',
      'Server: nginx/1.2.3',
      'X-Powered-By: PHP/5.6',
      'X-Internal-Trace: t-1',
      'X-Request-Id: made-by-the-target',
      'X-End-To-End: kept',
    ])
    plain = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
${routes(echo.url, fixed.url)}`)
    trusting = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
global:
  trustedProxies: [127.0.0.1]
  requestIdHeader: X-Correlation-Id
  hideUpstreamHeaders: [x-internal-trace]
${routes(echo.url, fixed.url)}`)
    ipv6 = await startGateway(`
listeners:
  - port: 0
    host: "::1"
${routes(echo.url, fixed.url)}`)
  })
  after(async () => {
    await Promise.all([plain.stop(), trusting.stop(), ipv6.stop()])
    await Promise.all([echo.close(), fixed.close()])
  })

  describe('hop-by-hop fields', () => {
    it('drops them, and every field named in Connection, on the way up', async () => {
      // Raw bytes: HTTP clients refuse to send most of these fields.
      const { text } = await rawRequest(
        plain.port(),
        [
          'POST /up HTTP/1.1',
          'Host: app.example.com',
          'Connection: close, X-Hop-Up, x-also-hop',
          'Keep-Alive: timeout=30',
          'X-Hop-Up: secret',
          'X-Also-Hop: secret',
          'Proxy-Connection: keep-alive',
          'TE: trailers',
          'Trailer: X-Checksum',
          'Upgrade: websocket',
          'Proxy-Authorization: Basic dXNlcjpwYXNz',
          'X-End-To-End: kept',
          'Content-Type: text/plain',
          'Content-Length: 5',
          '',
          'hello',
        ].join('\r\n'),
      )
      assert.equal(statusOf(text), 200, text)
      const seen = JSON.parse(rawBody(text)) as Echo
      for (const name of [
        'keep-alive',
        'x-hop-up',
        'x-also-hop',
        'proxy-connection',
        'te',
        'trailer',
        'upgrade',
        'proxy-authorization',
      ])
        assert.equal(seen.headers[name], undefined, name)
      // undici's own connection management, not the client's tokens.
      assert.doesNotMatch(seen.headers.connection ?? '', /hop|close/i)
      assert.equal(seen.headers['x-end-to-end'], 'kept')
      assert.equal(seen.headers['content-type'], 'text/plain')
      assert.equal(seen.headers['content-length'], '5')
    })

    it('frames a chunked request body anew; the body arrives whole', async () => {
      const chunked = await startUpstream('chunked', (req, res) => {
        const chunks: Buffer[] = []
        req.on('data', (chunk: Buffer) => chunks.push(chunk))
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end(
            JSON.stringify({ te: req.headers['transfer-encoding'], body: Buffer.concat(chunks).toString() }),
          )
        })
      })
      const gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
services:
  chunked:
    targets: [${chunked.url}]
routes:
  - path: /
    service: chunked
`)
      try {
        const reply = await send(gw.url(), '/', {
          method: 'POST',
          headers: { 'transfer-encoding': 'chunked' },
          body: 'abc',
        })
        assert.deepEqual(JSON.parse(reply.body), { te: 'chunked', body: 'abc' })
      } finally {
        await gw.stop()
        await chunked.close()
      }
    })

    it('drops them, and every field named in Connection, on the way down', async () => {
      const reply = await send(plain.url(), '/fixed')
      assert.equal(reply.status, 200)
      assert.equal(reply.body, 'ok')
      for (const name of ['x-hop-down', 'proxy-connection', 'proxy-authenticate', 'trailer', 'upgrade'])
        assert.equal(reply.headers[name], undefined, name)
      // Node's own keep-alive for the client's hop, never the target's values.
      assert.notEqual(reply.headers['keep-alive'], 'timeout=99, max=7')
      assert.doesNotMatch(String(reply.headers.connection), /hop/i)
      assert.equal(reply.headers['x-end-to-end'], 'kept')
    })
  })

  describe('X-Forwarded-* and Forwarded', () => {
    const claimed = {
      'x-forwarded-for': '198.51.100.7',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'public.example',
      forwarded: 'for=198.51.100.7;proto=https',
      'x-real-ip': '198.51.100.7',
      'x-forwarded-port': '443',
      'x-forwarded-prefix': '/app',
    }

    it('replaces what an untrusted peer claims with what the gateway saw', async () => {
      const { seen } = await echoed(plain.url(), '/', {
        headers: { ...claimed, host: 'app.example.com:8080' },
      })
      assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
      assert.equal(seen.headers['x-forwarded-proto'], 'http')
      assert.equal(seen.headers['x-forwarded-host'], 'app.example.com:8080')
      assert.equal(seen.headers.forwarded, 'for=127.0.0.1;proto=http;host="app.example.com:8080"')
      assert.equal(seen.headers['x-real-ip'], undefined)
      assert.equal(seen.headers['x-forwarded-port'], undefined)
      assert.equal(seen.headers['x-forwarded-prefix'], undefined)
    })

    it('extends what a trusted proxy says', async () => {
      const { seen } = await echoed(trusting.url(), '/', { headers: { ...claimed, host: 'inner:9000' } })
      assert.equal(seen.headers['x-forwarded-for'], '198.51.100.7, 127.0.0.1')
      assert.equal(seen.headers['x-forwarded-proto'], 'https')
      assert.equal(seen.headers['x-forwarded-host'], 'public.example')
      assert.equal(
        seen.headers.forwarded,
        'for=198.51.100.7;proto=https, for=127.0.0.1;proto=http;host="inner:9000"',
      )
      assert.equal(seen.headers['x-real-ip'], '198.51.100.7')
      assert.equal(seen.headers['x-forwarded-port'], '443')
      assert.equal(seen.headers['x-forwarded-prefix'], '/app')
    })

    it('joins repeated X-Forwarded-For and Forwarded fields from a trusted proxy in order', async () => {
      const { seen } = await echoed(trusting.url(), '/', {
        headers: {
          'x-forwarded-for': ['203.0.113.1', '198.51.100.7'],
          forwarded: ['for=203.0.113.1', 'for=198.51.100.7'],
        },
      })
      assert.equal(seen.headers['x-forwarded-for'], '203.0.113.1, 198.51.100.7, 127.0.0.1')
      assert.match(seen.headers.forwarded, /^for=203\.0\.113\.1, for=198\.51\.100\.7, for=127\.0\.0\.1;/)
    })

    it('quotes an IPv6 peer in Forwarded (RFC 7239 §6)', async () => {
      const { seen } = await echoed(`http://[::1]:${ipv6.port()}`, '/', { headers: { host: 'v6.example' } })
      assert.equal(seen.headers['x-forwarded-for'], '::1')
      assert.equal(seen.headers.forwarded, 'for="[::1]";proto=http;host="v6.example"')
    })

    it('escapes the Host in Forwarded so it cannot add parameters', async () => {
      assert.equal(
        forwardedElement('10.0.0.1', 'http', 'a";for=6.6.6.6'),
        'for=10.0.0.1;proto=http;host="a\\";for=6.6.6.6"',
      )
      assert.equal(forwardedElement('', 'https', ''), 'for=unknown;proto=https')
      assert.equal(forwardedElement('2001:db8::1', 'http', 'h'), 'for="[2001:db8::1]";proto=http;host="h"')
    })

    it('takes the client address from a trusted X-Forwarded-For, and only from a trusted one', async () => {
      const spoofed = { 'x-forwarded-for': '198.51.100.7' }
      // ip-restriction denies 198.51.100.7: it sees the client the trusted proxy names.
      const behindProxy = await send(trusting.url(), '/guarded', { headers: spoofed })
      assert.equal(behindProxy.status, 403)
      assert.equal(JSON.parse(behindProxy.body).code, 'GH_FORBIDDEN')
      // Without trust the claim is ignored: the client is the TCP peer.
      assert.equal((await send(plain.url(), '/guarded', { headers: spoofed })).status, 200)
      // Trusted, but the claimed client is further left than the walk goes.
      const walked = await send(trusting.url(), '/guarded', {
        headers: { 'x-forwarded-for': '198.51.100.7, 203.0.113.5' },
      })
      assert.equal(walked.status, 200)
    })
  })

  describe('request id', () => {
    it('propagates a safe incoming id up and back', async () => {
      const { reply, seen } = await echoed(plain.url(), '/', { headers: { 'x-request-id': 'abc-123' } })
      assert.equal(seen.headers['x-request-id'], 'abc-123')
      assert.equal(reply.headers['x-request-id'], 'abc-123')
    })

    it('generates a UUID when the id is absent, too long or has odd characters', async () => {
      for (const incoming of [undefined, 'x'.repeat(201), 'a b', 'id<script>', 'ü']) {
        const headers: Record<string, string> = incoming === undefined ? {} : { 'x-request-id': incoming }
        const { reply, seen } = await echoed(plain.url(), '/', { headers })
        assert.match(seen.headers['x-request-id'], UUID, String(incoming))
        assert.equal(reply.headers['x-request-id'], seen.headers['x-request-id'])
      }
    })

    it("replaces the target's own id on the way back", async () => {
      const reply = await send(plain.url(), '/fixed', { headers: { 'x-request-id': 'client-1' } })
      assert.equal(reply.headers['x-request-id'], 'client-1')
    })

    it('returns the id on local replies too, in the header and the problem', async () => {
      const reply = await send(plain.url(), '/local', { headers: { 'x-request-id': 'local-1' } })
      assert.equal(reply.status, 204)
      assert.equal(reply.headers['x-request-id'], 'local-1')
      const generated = await send(plain.url(), '/local')
      assert.match(String(generated.headers['x-request-id']), UUID)
      const denied = await send(trusting.url(), '/guarded', {
        headers: { 'x-forwarded-for': '198.51.100.7', 'x-correlation-id': 'corr-9' },
      })
      assert.equal(denied.status, 403)
      assert.equal(denied.headers['x-correlation-id'], 'corr-9')
      assert.equal(JSON.parse(denied.body).requestId, 'corr-9')
    })

    it('uses global.requestIdHeader both ways', async () => {
      const { reply, seen } = await echoed(trusting.url(), '/', {
        headers: { 'x-correlation-id': 'corr-1', 'x-request-id': 'just-a-header' },
      })
      assert.equal(seen.headers['x-correlation-id'], 'corr-1')
      assert.equal(reply.headers['x-correlation-id'], 'corr-1')
      // Under another name, x-request-id is an ordinary end-to-end field.
      assert.equal(seen.headers['x-request-id'], 'just-a-header')
      assert.equal(reply.headers['x-request-id'], undefined)
      const fresh = await echoed(trusting.url(), '/')
      assert.match(fresh.seen.headers['x-correlation-id'], UUID)
    })
  })

  describe('hidden target headers', () => {
    it('hides Server and X-Powered-By by default', async () => {
      const reply = await send(plain.url(), '/fixed')
      assert.equal(reply.headers.server, undefined)
      assert.equal(reply.headers['x-powered-by'], undefined)
      assert.equal(reply.headers['x-internal-trace'], 't-1')
    })

    it('hides exactly the configured list when global.hideUpstreamHeaders is set', async () => {
      const reply = await send(trusting.url(), '/fixed')
      assert.equal(reply.headers['x-internal-trace'], undefined)
      assert.equal(reply.headers.server, 'nginx/1.2.3')
      assert.equal(reply.headers['x-powered-by'], 'PHP/5.6')
    })
  })
})
