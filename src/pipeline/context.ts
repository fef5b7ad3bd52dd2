/**
 * Per-request state. One object per request, with a fixed shape; plugins keep
 * their per-request values in `locals`, never on the route or the plugin.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import type { GatehouseError } from '../errors.ts'
import { NO_PARAMS } from '../routing/router.ts'
import type { CompiledListener, CompiledRoute, Runtime } from '../runtime/runtime.ts'
import type { Target } from '../upstreams/target.ts'

export type ClientRequest = IncomingMessage | Http2ServerRequest
/**
 * Http2ServerResponse (compatibility API) implements the parts of
 * ServerResponse that Gatehouse uses (writeHead, write, end, drain, close,
 * destroy), so both are handled as ServerResponse.
 */
export type ClientResponse = ServerResponse
export type AnyServerResponse = ServerResponse | Http2ServerResponse

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
