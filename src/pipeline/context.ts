/**
 * Per-request state. One object per request, with a fixed shape; plugins keep
 * their per-request values in `locals`, never on the route or the plugin.
 */
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import type { GatehouseError } from '../errors.ts'
import type { Http2Request } from '../listeners/http2-exchange.ts'
import { NO_PARAMS } from '../routing/router.ts'
import type { CompiledListener, CompiledRoute, Runtime } from '../runtime/runtime.ts'
import type { Target } from '../upstreams/target.ts'

/**
 * The client's request: node:http's on HTTP/1.x, Gatehouse's own over an
 * HTTP/2 stream (listeners/http2-exchange.ts), which has the same names for
 * what the pipeline and plugins read (method, url, headers, rawHeaders,
 * httpVersionMajor/Minor, complete, socket.remoteAddress).
 */
export type ClientRequest = IncomingMessage | Http2Request
/**
 * What the pipeline needs of the response to the client: node:http's
 * ServerResponse on HTTP/1.x, Http2Response (listeners/http2-exchange.ts) on
 * HTTP/2. writeHead throws on a field that cannot be sent, before sending anything.
 */
export interface ClientResponse {
  writeHead(status: number, headers: OutgoingHttpHeaders): unknown
  /** false: the client is slower than the body; 'drain' follows. */
  write(chunk: Buffer | string): boolean
  end(chunk?: Buffer | string, encoding?: BufferEncoding): unknown
  /** Cuts the response, so the client sees it incomplete. */
  destroy(): unknown
  addTrailers(fields: OutgoingHttpHeaders): void
  /** RFC 9110 §15.2.1: tells a client waiting on `Expect: 100-continue` to send its body. */
  writeContinue(): void
  readonly statusCode: number
  readonly headersSent: boolean
  readonly destroyed: boolean
  readonly writableEnded: boolean
  readonly writableFinished: boolean
  on(event: 'close', listener: () => void): unknown
  once(event: 'close' | 'drain', listener: () => void): unknown
}

export class RequestContext {
  readonly req: ClientRequest
  readonly res: ClientResponse
  readonly runtime: Runtime
  readonly listener: CompiledListener
  readonly startTime: number
  readonly requestId: string
  readonly method: string
  /** Lower-case, port removed. */
  readonly host: string
  /** Path with dot-segments removed (RFC 3986 §5.2.4); what routing sees. */
  path: string
  /** Raw query string without `?`, or ''. */
  readonly query: string
  /** The TCP peer. */
  readonly peerIp: string
  /** The client as far as trusted proxies tell (X-Forwarded-For), else the peer. */
  readonly clientIp: string
  readonly secure: boolean

  route: CompiledRoute | null = null
  /** The route's path params; one shared empty (frozen) object when it has none. */
  params: Readonly<Record<string, string>> = NO_PARAMS
  /** The part of the path the route matched (the prefix for prefix routes). */
  matchedPath = ''
  /** Path and query sent upstream. */
  upstreamPath = ''
  target: Target | null = null
  upstreamStart = 0
  upstreamTimeMs = -1
  /** Tries sent upstream (the first and its retries); 0 when none was. */
  attempts = 0
  status = 0
  bytesOut = 0
  error: GatehouseError | null = null
  /** Set once a response (local or upstream) has started; later phases stop. */
  replied = false
  /**
   * The upstream exchange in progress, told when the client connection
   * closes (so a client that leaves cancels the upstream request). One field
   * instead of a second 'close' listener per request.
   */
  upstream: { clientClosed(): void } | null = null
  #locals: Record<string, unknown> | null = null

  /**
   * Positional, not an init object: this runs once per request, and the
   * object would be one more allocation on the hot path (createContext is
   * the one caller).
   */
  constructor(
    req: ClientRequest,
    res: ClientResponse,
    runtime: Runtime,
    listener: CompiledListener,
    requestId: string,
    method: string,
    host: string,
    path: string,
    query: string,
    peerIp: string,
    clientIp: string,
    secure: boolean,
  ) {
    this.req = req
    this.res = res
    this.runtime = runtime
    this.listener = listener
    this.startTime = performance.now()
    this.requestId = requestId
    this.method = method
    this.host = host
    this.path = path
    this.query = query
    this.peerIp = peerIp
    this.clientIp = clientIp
    this.secure = secure
  }

  /** Plugins' per-request values; made on first use (most requests have no plugin that keeps any). */
  get locals(): Record<string, unknown> {
    this.#locals ??= {}
    return this.#locals
  }
}
