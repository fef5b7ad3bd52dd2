/**
 * The servers behind the listeners. They outlive snapshots: each request asks
 * the gateway for the current runtime and finds its listener there by key.
 * A reload keeps a server whose shape did not change (its limits and
 * certificates are updated in place) and replaces one whose shape did.
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  ServerResponse,
} from 'node:http'
import {
  createSecureServer,
  type Http2SecureServer,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2'
import { createServer as createHttpsServer } from 'node:https'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { CertificateConfig, LimitsConfig, ListenerConfig } from '../config/types.ts'
import type { GatehouseError } from '../errors.ts'
import { createContext, handleRequest } from '../pipeline/handle.ts'
import { sendProblem } from '../pipeline/reply.ts'
import { proxyUpgrade } from '../proxy/upgrade.ts'
import type { CompiledListener, Runtime } from '../runtime/runtime.ts'
import { answerClientError } from './client-error.ts'
import { type Http2Peer, Http2Request, Http2Response } from './http2-exchange.ts'

type AnyServer = Server | Http2SecureServer

export interface RunningListener {
  readonly key: string
  readonly shape: string
  readonly server: AnyServer
  /** The bound address (port 0 resolved). */
  port(): number
  close(): void
  closeIdle(): void
  closeAll(): void
}

/** What cannot change on a running server: with a different shape the server is replaced. */
export function listenerShape(config: ListenerConfig): string {
  return JSON.stringify([
    config.host,
    config.port,
    config.tls !== null,
    config.tls?.http2,
    config.limits.maxHeaderSize,
  ])
}

/**
 * Where a listener binds beyond its config: with worker threads every thread
 * binds the same port with SO_REUSEPORT (the kernel spreads connections), and
 * a listener configured on port 0 takes the port the first thread was given.
 */
export interface BindOptions {
  readonly reusePort: boolean
  /** The port to bind instead of the configured one (a port-0 listener in a second thread). */
  readonly port?: number
}

export async function startListener(
  listener: CompiledListener,
  current: () => Runtime,
  bind: BindOptions = { reusePort: false },
): Promise<RunningListener> {
  const key = listener.key
  const config = listener.config
  // Requests on a listener that a reload removed finish on the last snapshot that had it.
  let last = listener
  const resolve = (): { runtime: Runtime; listener: CompiledListener } => {
    const rt = current()
    last = rt.listeners.get(key) ?? last
    return { runtime: rt, listener: last }
  }
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const { runtime: rt, listener: l } = resolve()
    handleRequest(rt, l, req, res)
  }
  const sessions = new Set<Http2Session>()
  let server: AnyServer
  const limits = config.limits
  const http1Options = {
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: checkingInterval(limits),
    // Checked in accept() instead, so the 400 is problem+json like every other refusal.
    requireHostHeader: false,
    // Strict llhttp whatever NODE_OPTIONS says (--insecure-http-parser): lenient parsing is how smuggling works.
    insecureHTTPParser: false,
  }
  if (config.tls === null) {
    server = createHttpServer(http1Options, onRequest)
  } else {
    const sni = (servername: string, callback: (error: Error | null, context?: unknown) => void) =>
      callback(null, resolve().listener.secureContext?.(servername))
    const first = defaultCertificate(config)
    const tlsOptions = {
      cert: first.certPem,
      key: first.keyPem,
      minVersion: config.tls.minVersion,
      SNICallback: sni as never,
      ticketKeys: listener.ticketKeys,
    }
    if (config.tls.http2) {
      const h2 = createSecureServer(
        {
          ...tlsOptions,
          ...http1Options,
          allowHTTP1: true,
          maxSessionMemory: 64,
          // Hard caps at twice the limits: beyond them nghttp2 resets the stream (ENHANCE_YOUR_CALM);
          // between, accept() answers 431 problem+json from the live limits. The 4 are the pseudo-headers.
          settings: { maxHeaderListSize: 2 * limits.maxHeaderSize, enablePush: false },
          maxHeaderListPairs: 2 * limits.maxHeaderCount + 4,
        },
        onRequest as never,
      )
      // The request listener serves HTTP/1.1 clients (ALPN http/1.1). Adding it
      // also made Node attach its compatibility layer to every HTTP/2 stream;
      // streams are served on the core API instead (http2-exchange.ts says why).
      h2.removeAllListeners('stream')
      // Node re-emits TLS handshake failures as clientError on HTTP/2 servers; there is no HTTP to answer yet.
      h2.removeAllListeners('tlsClientError')
      h2.on('session', (session: Http2Session) => {
        sessions.add(session)
        session.once('close', () => sessions.delete(session))
        closeWhenIdle(session, () => resolve().listener.limits.keepAliveTimeoutMs)
        const peer: Http2Peer = { remoteAddress: session.socket?.remoteAddress }
        let neverIndexed: readonly string[] = []
        session.on(
          'stream',
          (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags, rawHeaders: string[]) => {
            const { runtime: rt, listener: l } = resolve()
            const idHeader = rt.config.global.requestIdHeader
            if (neverIndexed[0] !== idHeader) neverIndexed = neverIndexedFields(idHeader)
            handleRequest(
              rt,
              l,
              new Http2Request(stream, headers, rawHeaders, peer),
              new Http2Response(stream, headers[':method'] === 'HEAD', neverIndexed),
            )
          },
        )
      })
      server = h2
    } else {
      server = createHttpsServer({ ...tlsOptions, ...http1Options }, onRequest)
    }
  }
  applyLimits(server, listener)

  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) =>
    answerClientError(error, socket, resolve().runtime.config.global.requestIdHeader),
  )
  server.on('tlsClientError', (_error: Error, socket: TLSSocket) => socket.destroy())
  // Expect: 100-continue (RFC 9110 §10.1.1): the request goes through the phases like any other, and
  // `100 Continue` is sent only when the body is about to be forwarded (handle.ts requestBody). A request
  // refused before that (too large, no route, 401...) gets its final status and the body is never sent.
  server.on('checkContinue', onRequest)
  // Any other expectation: accept() answers 417 as problem+json (Node's default is a bare 417).
  server.on('checkExpectation', onRequest)
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const { runtime: rt, listener: l } = resolve()
    proxyUpgrade(rt, l, req, socket, head)
  })

  await new Promise<void>((ready, fail) => {
    server.once('error', fail)
    server.listen({ port: bind.port ?? config.port, host: config.host, reusePort: bind.reusePort }, () => {
      server.off('error', fail)
      ready()
    })
  })

  return {
    key,
    shape: listenerShape(config),
    server,
    port: () => {
      const address = server.address()
      return typeof address === 'object' && address !== null ? address.port : config.port
    },
    close: () => {
      server.close()
      for (const session of sessions) session.close()
    },
    closeIdle: () => {
      if ('closeIdleConnections' in server) server.closeIdleConnections()
      for (const session of sessions) session.close()
    },
    closeAll: () => {
      if ('closeAllConnections' in server) server.closeAllConnections()
      for (const session of sessions) session.destroy()
    },
  }
}

/**
 * Response fields HPACK sends as never-indexed literals (RFC 7541 §7.1.3);
 * every other field goes through the dynamic table, so repeated ones cost a
 * byte or two. The request id is unique per response: indexing it would
 * only evict useful entries (when every field was indexed, that churn cost
 * about a fifth of the CPU per HTTP/2 request in profiles). Set-Cookie
 * carries secrets a shared compression context must not help guess (the
 * CRIME attack RFC 7541 §7.1.3 describes).
 */
function neverIndexedFields(requestIdHeader: string): readonly string[] {
  return [requestIdHeader, 'set-cookie']
}

/** Limits that a running server takes in place (called again on reload). */
export function applyLimits(server: AnyServer, listener: CompiledListener): void {
  const limits = listener.limits
  const s = server as Server
  // Node checks both timeouts every connectionsCheckingInterval, fixed at creation (checkingInterval()).
  s.headersTimeout = limits.headersTimeoutMs
  s.requestTimeout = limits.requestTimeoutMs
  s.keepAliveTimeout = limits.keepAliveTimeoutMs
  // One more than allowed, so the request handler sees the excess and answers 431 instead of Node dropping fields.
  s.maxHeadersCount = limits.maxHeaderCount + 1
  // Beyond it Node closes new connections as they arrive (net.Server 'drop'), before any TLS or HTTP.
  s.maxConnections = limits.maxConnections
  if (listener.config.tls) {
    const first = defaultCertificate(listener.config)
    ;(server as Http2SecureServer).setSecureContext({
      cert: first.certPem,
      key: first.keyPem,
      minVersion: listener.config.tls.minVersion,
      // The same keys, so tickets issued before a reload still resume.
      ticketKeys: listener.ticketKeys,
    })
  }
}

/** The certificate for clients that send no SNI: the one marked default, else the first. */
function defaultCertificate(config: ListenerConfig): CertificateConfig {
  const certificates = config.tls!.certificates
  return certificates.find((c) => c.default) ?? certificates[0]
}

/**
 * How often Node sweeps connections for headersTimeout / requestTimeout.
 * Node's default is 30 s, which would let a slowloris client hold a
 * connection 30 s past a 10 s headersTimeout; sweeping at half the shortest
 * timeout (at most every second) keeps the overshoot small. The interval is
 * fixed when the server is created; a reload that shortens a timeout still
 * acts within a second of it.
 */
function checkingInterval(limits: LimitsConfig): number {
  const timeouts = [limits.headersTimeoutMs, limits.requestTimeoutMs].filter((ms) => ms > 0)
  if (timeouts.length === 0) return 1000
  return Math.min(1000, Math.max(50, Math.floor(Math.min(...timeouts) / 2)))
}

/**
 * keepAliveTimeout for HTTP/2: a session with no open stream for that long is
 * closed with GOAWAY (RFC 9113 §6.8), as an idle HTTP/1.1 keep-alive connection
 * would be. Node's own session timeout counts frames, not streams, so it would
 * also cut a stream that waits quietly on a slow upstream.
 *
 * One timer per session, not one set and cleared per stream: the timer keeps
 * running while streams come and go, and when it fires it looks at how long
 * the session has been idle, then closes it or sleeps for the rest.
 */
function closeWhenIdle(session: Http2Session, idleMs: () => number): void {
  let open = 0
  let idleSince = performance.now()
  let timer: NodeJS.Timeout | null = null
  const check = () => {
    timer = null
    // Busy: the last stream to close looks again.
    if (open > 0 || session.closed || session.destroyed) return
    const ms = idleMs()
    if (ms <= 0) return
    const left = idleSince + ms - performance.now()
    if (left <= 0) session.close()
    else timer = setTimeout(check, left).unref()
  }
  const onStreamClose = () => {
    if (--open > 0) return
    idleSince = performance.now()
    if (timer === null) check()
  }
  session.on('stream', (stream: ServerHttp2Stream) => {
    open++
    stream.on('close', onStreamClose)
  })
  session.once('close', () => {
    if (timer !== null) clearTimeout(timer)
  })
  check()
}

/** For an upgrade request refused before it reaches a target: answer on the raw socket. */
export function refuseUpgrade(
  runtime: Runtime,
  listener: CompiledListener,
  req: IncomingMessage,
  socket: Socket,
  error: GatehouseError,
): void {
  const res = new ServerResponse(req)
  res.assignSocket(socket)
  res.shouldKeepAlive = false
  res.once('finish', () => socket.destroySoon())
  const ctx = createContext(runtime, listener, req, res)
  sendProblem(ctx, error, { connection: 'close' })
}
