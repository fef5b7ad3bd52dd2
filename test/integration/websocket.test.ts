/**
 * WebSocket (HTTP/1.1 Upgrade) through the gateway with real `ws` clients
 * and servers: messages both ways, closes with their code and reason both
 * ways, a broken target connection, a target that refuses the upgrade, and
 * refusals the gateway makes itself.
 */
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import WebSocket, { WebSocketServer } from 'ws'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

interface Seen {
  /** Server-side sockets by the `x-test` header the client sent. */
  sockets: Map<string, WebSocket>
  closes: Map<string, { code: number; reason: string }>
  requests: Map<string, IncomingMessage>
  /** Tags whose connection the gateway ended before any upgrade. */
  ended: Set<string>
}

describe('websocket proxying', () => {
  let target: { server: Server; port: number; seen: Seen; close(): Promise<void> }
  let gw: TestGateway
  const clients: WebSocket[] = []

  before(async () => {
    target = await startWsTarget()
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
services:
  chat: {targets: ['http://127.0.0.1:${target.port}']}
  gone: {targets: ['http://127.0.0.1:1']}
  silent:
    targets: ['http://127.0.0.1:${target.port}']
    timeouts: {response: 200ms}
routes:
  - {path: /silent, service: silent}
  - {path: /ws, service: chat}
  - {path: /refuse, service: chat}
  - {path: /gone, service: gone}
  - {path: /hello, respond: {status: 200, body: hi}}
`)
  })

  after(async () => {
    for (const client of clients) client.terminate()
    await gw.stop(0)
    await target.close()
  })

  /** Opens a client through the gateway; `tag` names it to the target. */
  function open(path: string, tag: string, protocols?: string[]): WebSocket {
    const client = new WebSocket(`ws://127.0.0.1:${gw.port()}${path}`, protocols, {
      headers: { 'x-test': tag },
    })
    clients.push(client)
    return client
  }

  /** Messages as they arrive (a message can come with the 101 itself), taken in order. */
  function inbox(client: WebSocket): () => Promise<{ data: Buffer; binary: boolean }> {
    const queue: { data: Buffer; binary: boolean }[] = []
    client.on('message', (data, binary) => queue.push({ data: data as Buffer, binary }))
    return async () => {
      await eventually(() => queue.length > 0)
      return queue.shift()!
    }
  }

  function opened(client: WebSocket): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      client.once('upgrade', resolve)
      client.once('error', reject)
    })
  }

  function closed(client: WebSocket): Promise<{ code: number; reason: string }> {
    return new Promise((resolve) =>
      client.once('close', (code, reason) => resolve({ code, reason: String(reason) })),
    )
  }

  /** The answer to an upgrade the gateway or the target refused. */
  function refused(
    client: WebSocket,
  ): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
    return new Promise((resolve, reject) => {
      client.once('open', () => reject(new Error('the upgrade was accepted')))
      client.once('error', () => {})
      client.once('unexpected-response', (_req, res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          body += chunk
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
      })
    })
  }

  it('carries text and binary messages both ways, forwarding headers and the subprotocol', async () => {
    const client = open('/ws/room', 'messages', ['chat.v1'])
    const nextMessage = inbox(client)
    const upgrade = await opened(client)
    assert.equal(client.protocol, 'chat.v1')
    assert.match(String(upgrade.headers['x-request-id']), /.+/)
    const request = target.seen.requests.get('messages')!
    assert.equal(request.url, '/ws/room')
    assert.equal(request.headers['x-forwarded-for'], '127.0.0.1')
    assert.equal(request.headers['x-request-id'], upgrade.headers['x-request-id'])

    assert.equal(String((await nextMessage()).data), 'welcome')
    client.send('hello')
    assert.equal(String((await nextMessage()).data), 'echo:hello')
    const big = Buffer.alloc(1024 * 1024, 7)
    client.send(big)
    const echoed = await nextMessage()
    assert.equal(echoed.binary, true)
    assert.equal(echoed.data.length, big.length + 5)
    assert.ok(echoed.data.subarray(5).equals(big))
    client.close()
  })

  it('relays the target closing, with its code and reason', async () => {
    const client = open('/ws', 'target-closes')
    await opened(client)
    const close = closed(client)
    await eventually(() => target.seen.sockets.has('target-closes'))
    target.seen.sockets.get('target-closes')!.close(4000, 'target says bye')
    assert.deepEqual(await close, { code: 4000, reason: 'target says bye' })
  })

  it('relays the client closing, with its code and reason', async () => {
    const client = open('/ws', 'client-closes')
    await opened(client)
    await eventually(() => target.seen.sockets.has('client-closes'))
    client.close(4001, 'client says bye')
    await eventually(() => target.seen.closes.has('client-closes'))
    assert.deepEqual(target.seen.closes.get('client-closes'), { code: 4001, reason: 'client says bye' })
  })

  it('closes the target connection when the client connection breaks', async () => {
    const client = open('/ws', 'client-vanishes')
    await opened(client)
    await eventually(() => target.seen.sockets.has('client-vanishes'))
    client.terminate()
    await eventually(() => target.seen.closes.has('client-vanishes'))
    assert.equal(target.seen.closes.get('client-vanishes')!.code, 1006)
  })

  it('closes the client connection when the target connection breaks', async () => {
    const client = open('/ws', 'target-resets')
    await opened(client)
    const close = closed(client)
    await eventually(
      () => target.seen.requests.has('target-resets') && target.seen.sockets.has('target-resets'),
    )
    ;(target.seen.requests.get('target-resets')!.socket as Socket).resetAndDestroy()
    // No close frame was sent: 1006, abnormal closure (RFC 6455 §7.1.5).
    assert.equal((await close).code, 1006)
  })

  it('relays a target that refuses the upgrade', async () => {
    const answer = await refused(open('/refuse', 'refused'))
    assert.equal(answer.status, 403)
    assert.equal(answer.body, 'not you')
    assert.match(String(answer.headers['x-request-id']), /.+/)
  })

  it('answers 404 problem+json to an upgrade that matches no route', async () => {
    const answer = await refused(open('/nowhere', 'no-route'))
    assert.equal(answer.status, 404)
    assert.equal(answer.headers['content-type'], 'application/problem+json')
    assert.equal(JSON.parse(answer.body).code, 'GH_ROUTE_NOT_FOUND')
  })

  it('answers 502 problem+json when the target cannot be reached', async () => {
    const answer = await refused(open('/gone', 'unreachable'))
    assert.equal(answer.status, 502)
    assert.equal(JSON.parse(answer.body).code, 'GH_UPSTREAM_UNREACHABLE')
  })

  it('answers 504 problem+json when the target does not answer the upgrade within timeouts.response', async () => {
    const answer = await refused(open('/silent', 'silent'))
    assert.equal(answer.status, 504)
    assert.equal(JSON.parse(answer.body).code, 'GH_UPSTREAM_TIMEOUT')
    // The gateway gave up on the target's connection too.
    await eventually(() => target.seen.ended.has('silent'))
  })

  it('answers an upgrade on a non-proxy route as an ordinary request', async () => {
    const answer = await refused(open('/hello', 'respond'))
    assert.equal(answer.status, 200)
    assert.equal(answer.body, 'hi')
  })
})

/**
 * A WebSocket target: /ws echoes (`echo:` + text, or 5 bytes of prefix + binary)
 * after a welcome; /refuse answers 403 without upgrading; /silent never answers.
 */
async function startWsTarget() {
  const seen: Seen = { sockets: new Map(), closes: new Map(), requests: new Map(), ended: new Set() }
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (protocols) => protocols.values().next().value ?? false,
  })
  const server = createServer((_req, res) => res.end('plain'))
  const sockets = new Set<Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => {})
    const tag = String(req.headers['x-test'])
    seen.requests.set(tag, req)
    if (req.url?.startsWith('/silent')) {
      socket.once('end', () => seen.ended.add(tag))
      socket.resume()
      return
    }
    if (req.url?.startsWith('/refuse')) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nnot you')
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      seen.sockets.set(tag, ws)
      ws.on('error', () => {})
      ws.on('close', (code, reason) => seen.closes.set(tag, { code, reason: String(reason) }))
      ws.on('message', (data, binary) => {
        if (binary) ws.send(Buffer.concat([Buffer.from('echo:'), data as Buffer]))
        else ws.send(`echo:${data}`)
      })
      ws.send('welcome')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    server,
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        wss.close()
        server.close(() => resolve())
      }),
  }
}
