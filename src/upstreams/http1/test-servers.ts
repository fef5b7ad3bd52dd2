/**
 * Real targets for the HTTP/1.1 client's tests, on 127.0.0.1 port 0: a
 * node:http (or node:https) server that records what it received and counts
 * its connections, and a raw TCP server for the bytes node:http would never
 * send (malformed heads, 1xx, early closes, HTTP/1.0).
 */
import {
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { type AddressInfo, createServer as createNetServer, type Server, type Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'

/** One request as the target saw it, body read to its end. */
export interface SeenRequest {
  readonly method: string
  readonly url: string
  /** Names and values exactly as received, in order. */
  readonly rawHeaders: readonly string[]
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
  /** Which connection (0-based, in accept order; for TLS in handshake order) carried it. */
  readonly connection: number
}

export type HttpTargetHandler = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void

export interface HttpTarget {
  readonly port: number
  readonly origin: string
  readonly requests: SeenRequest[]
  /** Server-side sockets in accept order (for TLS: the raw TCP sockets). */
  readonly sockets: Socket[]
  /** 'connection' events so far. */
  connections(): number
  /** Server-side sockets closed so far. */
  closed(): number
  /** SNI names the TLS handshakes carried (false or null when none was sent). */
  readonly servernames: (string | false | null)[]
  close(): Promise<void>
}

/**
 * The handler runs once the request body has been read whole; without one the
 * target answers 200 "ok". `tls` serves https with that key pair.
 */
export async function startHttpTarget(
  handler: HttpTargetHandler = (_req, res) => res.end('ok'),
  tls?: { cert: string; key: string },
): Promise<HttpTarget> {
  const requests: SeenRequest[] = []
  const sockets: Socket[] = []
  const servernames: (string | false | null)[] = []
  const connectionIndex = new WeakMap<Socket, number>()
  let closedCount = 0
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const seen: SeenRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        rawHeaders: req.rawHeaders,
        headers: req.headers,
        body: Buffer.concat(chunks),
        connection: connectionIndex.get(req.socket) ?? -1,
      }
      requests.push(seen)
      handler(req, res, seen)
    })
  }
  const server = tls
    ? createHttpsServer({ cert: tls.cert, key: tls.key }, onRequest)
    : createHttpServer(onRequest)
  // Long enough never to be the one closing an idle socket: the client's timers are under test.
  server.keepAliveTimeout = 60_000
  server.on('connection', (socket: Socket) => {
    connectionIndex.set(socket, sockets.push(socket) - 1)
    socket.once('close', () => closedCount++)
  })
  server.on('secureConnection', (socket: TLSSocket) => {
    connectionIndex.set(socket, servernames.push(socket.servername) - 1)
  })
  // A client that gives up mid-handshake is a case under test, not a failure of the target.
  server.on('tlsClientError', () => {})
  await listen(server)
  const { port } = server.address() as AddressInfo
  return {
    port,
    origin: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    requests,
    sockets,
    servernames,
    connections: () => sockets.length,
    closed: () => closedCount,
    close: () => closeServer(server, sockets),
  }
}

/** One accepted connection of the raw target. */
export interface RawPeer {
  readonly socket: Socket
  /** Every byte the client sent on it. */
  received(): Buffer
  /** Request heads (up to and including the blank line) seen on it, in order. */
  readonly heads: string[]
  closed(): boolean
}

/**
 * Called for every request head received; `index` counts heads over all
 * connections. Request bodies are not parsed: the raw target is for requests
 * without one.
 */
export type RawResponder = (peer: RawPeer, head: string, index: number) => void

export interface RawTarget {
  readonly port: number
  readonly origin: string
  readonly peers: RawPeer[]
  /** Everything received over all connections, in accept order. */
  received(): string
  close(): Promise<void>
}

export async function startRawTarget(respond: RawResponder): Promise<RawTarget> {
  const peers: RawPeer[] = []
  const sockets: Socket[] = []
  let heads = 0
  const server = createNetServer((socket) => {
    sockets.push(socket)
    const chunks: Buffer[] = []
    let pending = ''
    let isClosed = false
    const peer: RawPeer = {
      socket,
      received: () => Buffer.concat(chunks),
      heads: [],
      closed: () => isClosed,
    }
    peers.push(peer)
    // The client resetting a connection it gave up on is expected here.
    socket.on('error', () => {})
    socket.once('close', () => {
      isClosed = true
    })
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      pending += chunk.toString('latin1')
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.slice(0, end + 4)
        pending = pending.slice(end + 4)
        peer.heads.push(head)
        respond(peer, head, heads++)
      }
    })
  })
  await listen(server)
  const { port } = server.address() as AddressInfo
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    peers,
    received: () => peers.map((peer) => peer.received().toString('latin1')).join(''),
    close: () => closeServer(server, sockets),
  }
}

/** A port nothing listens on: bound, then released. */
export async function closedPort(): Promise<number> {
  const server = createNetServer()
  await listen(server)
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

function listen(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
}

function closeServer(server: Server, sockets: readonly Socket[]): Promise<void> {
  for (const socket of sockets) socket.destroy()
  return new Promise((resolve) => server.close(() => resolve()))
}
