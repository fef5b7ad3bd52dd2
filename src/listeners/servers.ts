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
import { createSecureServer, type Http2SecureServer, type Http2Session } from 'node:http2'
import { createServer as createHttpsServer } from 'node:https'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { ListenerConfig } from '../config/types.ts'
import type { GatehouseError } from '../errors.ts'
import { createContext, handleRequest } from '../pipeline/handle.ts'
import { sendProblem } from '../pipeline/reply.ts'
import { proxyUpgrade } from '../proxy/upgrade.ts'
import type { CompiledListener, Runtime } from '../runtime/runtime.ts'
import { answerClientError } from './client-error.ts'

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

export async function startListener(
  listener: CompiledListener,
  current: () => Runtime,
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
  if (config.tls === null) {
    server = createHttpServer({ maxHeaderSize: limits.maxHeaderSize, requireHostHeader: true }, onRequest)
  } else {
    const sni = (servername: string, callback: (error: Error | null, context?: unknown) => void) =>
      callback(null, resolve().listener.secureContext?.(servername))
    const first = config.tls.certificates.find((c) => c.default) ?? config.tls.certificates[0]
    const tlsOptions = {
      cert: first.certPem,
      key: first.keyPem,
      minVersion: config.tls.minVersion,
      SNICallback: sni as never,
    }
    if (config.tls.http2) {
      const h2 = createSecureServer(
        {
          ...tlsOptions,
          allowHTTP1: true,
          maxSessionMemory: 64,
          settings: { maxHeaderListSize: limits.maxHeaderSize, enablePush: false },
          maxHeaderListPairs: limits.maxHeaderCount + 4,
        },
        onRequest as never,
      )
      h2.on('session', (session: Http2Session) => {
        sessions.add(session)
        session.once('close', () => sessions.delete(session))
      })
      server = h2
    } else {
      server = createHttpsServer({ ...tlsOptions, maxHeaderSize: limits.maxHeaderSize }, onRequest)
    }
  }
  applyLimits(server, listener)

  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => answerClientError(error, socket))
  server.on('tlsClientError', (_error: Error, socket: TLSSocket) => socket.destroy())
  // Expect: 100-continue (RFC 9110 §10.1.1): refuse a body we would refuse anyway before the client sends it.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    const { runtime: rt, listener: l } = resolve()
    const length = Number(req.headers['content-length'] ?? 0)
    if (length <= l.limits.maxBodySize) res.writeContinue()
    handleRequest(rt, l, req, res)
  })
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const { runtime: rt, listener: l } = resolve()
    proxyUpgrade(rt, l, req, socket, head)
  })

  await new Promise<void>((ready, fail) => {
    server.once('error', fail)
    server.listen({ port: config.port, host: config.host }, () => {
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

/** Limits that a running server takes in place (called again on reload). */
export function applyLimits(server: AnyServer, listener: CompiledListener): void {
  const limits = listener.limits
  const s = server as Server
  s.headersTimeout = limits.headersTimeoutMs
  s.requestTimeout = limits.requestTimeoutMs
  s.keepAliveTimeout = limits.keepAliveTimeoutMs
  // One more than allowed, so the request handler sees the excess and answers 431 instead of Node dropping fields.
  s.maxHeadersCount = limits.maxHeaderCount + 1
  s.maxConnections = limits.maxConnections
  if (listener.config.tls) {
    const first =
      listener.config.tls.certificates.find((c) => c.default) ?? listener.config.tls.certificates[0]
    ;(server as Http2SecureServer).setSecureContext({
      cert: first.certPem,
      key: first.keyPem,
      minVersion: listener.config.tls.minVersion,
    })
  }
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
