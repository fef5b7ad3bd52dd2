/**
 * One request through the phases:
 *   accept checks -> route -> onRequest -> authenticate -> authorize
 *   -> transformRequest -> handle (terminal) -> response phases -> onComplete
 * Any phase before handle may answer locally; every error takes sendError.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { constants as http2Constants } from 'node:http2'
import type { Readable } from 'node:stream'
import { GatehouseError } from '../errors.ts'
import type { Http2Request } from '../listeners/http2-exchange.ts'
import { unmapIpv4 } from '../net/ip.ts'
import { forward } from '../proxy/forward.ts'
import type { CompiledListener, CompiledRoute, PhaseChains, Runtime } from '../runtime/runtime.ts'
import type { RequestBody } from '../upstreams/http1/handler.ts'
import { type ClientRequest, type ClientResponse, RequestContext } from './context.ts'
import { REQUEST_PHASES } from './phases.ts'
import type { ResponseHead } from './plugin.ts'
import { sendError, sendLocal, sendProblem } from './reply.ts'
import { clientIpFrom, hostOnly, normalizePath, requestIdFrom, splitTarget } from './request-facts.ts'

export type Terminal = (ctx: RequestContext) => void

export function handleRequest(
  runtime: Runtime,
  listener: CompiledListener,
  req: ClientRequest,
  res: ClientResponse,
  terminal: Terminal = handle,
): void {
  const ctx = createContext(runtime, listener, req, res)
  runtime.inflight++
  ;(res as ResponseWithContext)[CONTEXT] = ctx
  res.on('close', onResponseClose)
  if (req.httpVersionMajor === 2) armHttp2RequestTimeout(ctx, req as Http2Request)
  try {
    if (!accept(ctx)) return
    if (!route(ctx)) return
    const chains = ctx.route!.chains
    const pending = runRequestPhases(ctx, chains, 0, 0)
    if (pending === undefined) {
      if (!ctx.replied) terminal(ctx)
    } else {
      // One catch for the phases and the terminal: a throw after an async plugin is a reply, never an unhandled rejection.
      pending
        .then(() => {
          if (!ctx.replied) terminal(ctx)
        })
        .catch((error: unknown) => sendError(ctx, error))
    }
  } catch (error) {
    sendError(ctx, error)
  }
}

/**
 * The request's context, tied to its response so that one shared 'close'
 * listener finds it: no closure and no `once` wrapper per request.
 */
const CONTEXT = Symbol('gatehouse.context')
type ResponseWithContext = ClientResponse & { [CONTEXT]?: RequestContext }

function onResponseClose(this: ResponseWithContext): void {
  const ctx = this[CONTEXT]
  if (ctx !== undefined) complete(ctx)
}

export function createContext(
  runtime: Runtime,
  listener: CompiledListener,
  req: ClientRequest,
  res: ClientResponse,
): RequestContext {
  const target = splitTarget(req.url ?? '/')
  const peerIp = unmapIpv4(req.socket?.remoteAddress ?? '')
  const headers = req.headers
  return new RequestContext(
    req,
    res,
    runtime,
    listener,
    requestIdFrom(headers[runtime.config.global.requestIdHeader]),
    req.method ?? 'GET',
    hostOnly(target.authority ?? headers.host ?? (headers[':authority'] as string | undefined)),
    target.path.startsWith('/') ? normalizePath(target.path) : target.path,
    target.query,
    peerIp,
    clientIpFrom(peerIp, headers['x-forwarded-for'], runtime.trustedProxies),
    listener.config.tls !== null,
  )
}

/**
 * Listener-level checks on the request head, before routing: size limits,
 * what RFC 9112 refuses but Node's parser lets through, expectations, and
 * the redirect to HTTPS. Framing errors (Content-Length with
 * Transfer-Encoding, bad chunked, obs-fold, bare LF) never get here: llhttp
 * refuses them and listeners/client-error.ts answers 400.
 */
function accept(ctx: RequestContext): boolean {
  const { limits, config } = ctx.listener
  const req = ctx.req
  const url = req.url ?? '/'
  if (url.length > limits.maxUrlLength) {
    const error = new GatehouseError(
      'GH_URI_TOO_LONG',
      `The request target is longer than ${limits.maxUrlLength} bytes`,
    )
    return refuse(ctx, error)
  }
  if (headerCount(req) > limits.maxHeaderCount) {
    const error = new GatehouseError(
      'GH_HEADERS_TOO_LARGE',
      `More than ${limits.maxHeaderCount} header fields`,
    )
    return refuse(ctx, error)
  }
  // llhttp bounds an HTTP/1 head by maxHeaderSize; nghttp2 only advertises it (SETTINGS_MAX_HEADER_LIST_SIZE).
  if (req.httpVersionMajor === 2 && headerListSize(req) > limits.maxHeaderSize) {
    const error = new GatehouseError(
      'GH_HEADERS_TOO_LARGE',
      `The header fields exceed ${limits.maxHeaderSize} bytes`,
    )
    return refuse(ctx, error)
  }
  if (req.httpVersionMajor === 1) {
    const problem = http1FramingProblem(req as IncomingMessage)
    // After a framing doubt nothing else on the connection can be trusted (RFC 9112 §11.2): close.
    if (problem !== null) return refuse(ctx, new GatehouseError('GH_BAD_REQUEST', problem), true)
  }
  const expect = req.headers.expect
  if (expect !== undefined && !CONTINUE.test(expect)) {
    // RFC 9110 §10.1.1: an expectation the server cannot meet gets 417.
    const error = new GatehouseError('GH_EXPECTATION_FAILED', 'Only "Expect: 100-continue" is supported')
    return refuse(ctx, error)
  }
  if (!ctx.path.startsWith('/')) {
    const error = new GatehouseError('GH_BAD_REQUEST', 'The request target must be a path (origin-form)')
    return refuse(ctx, error, true)
  }
  if (config.redirectToHttps !== null) {
    // An HTTP/1.0 request may come without Host; there is then no name to send the client to.
    if (ctx.host === '') return refuse(ctx, new GatehouseError('GH_BAD_REQUEST', 'A Host header is needed'))
    const port = config.redirectToHttps.port === 443 ? '' : `:${config.redirectToHttps.port}`
    // Same host and request target, only the scheme (and port) change; the
    // body is not read. 308 by default keeps the method and body (RFC 9110 §15.4.9).
    const location = `https://${ctx.host}${port}${url}`
    sendLocal(ctx, config.redirectToHttps.status, closeIfBodyUnread(ctx, { location }), '')
    return false
  }
  return true
}

/** Node's own test for a 100-continue expectation (node:_http_server). */
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i

/** RFC 9110 §7.2 / RFC 3986 §3.2.2: a reg-name or IP-literal, then an optional port. */
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$/

/** Header fields the client sent; HTTP/2 pseudo-headers (`:path`...) are not counted. */
function headerCount(req: ClientRequest): number {
  const raw = req.rawHeaders
  if (req.httpVersionMajor !== 2) return raw.length / 2
  let count = 0
  for (let i = 0; i < raw.length; i += 2) if (raw[i].charCodeAt(0) !== 58 /* ':' */) count++
  return count
}

/** RFC 9113 §6.5.2: the uncompressed size of every name and value, plus 32 octets per field. */
function headerListSize(req: ClientRequest): number {
  const raw = req.rawHeaders
  let size = 0
  for (let i = 0; i < raw.length; i += 2) size += raw[i].length + raw[i + 1].length + 32
  return size
}

/**
 * What HTTP/1.x forbids and llhttp (strict mode) still passes; null when the
 * head is sound. Everything here is answered 400 with the connection closed.
 */
function http1FramingProblem(req: IncomingMessage): string | null {
  let hosts = 0
  let host = ''
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2)
    if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') {
      hosts++
      host = raw[i + 1]
    }
  // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, with more than
  // one, or with an invalid value (two hosts let routing and the target disagree).
  if (hosts === 0 && req.httpVersionMinor >= 1) return 'An HTTP/1.1 request needs a Host header'
  if (hosts > 1) return 'More than one Host header'
  if (hosts === 1 && !HOST_VALUE.test(host)) return 'The Host header is not a valid host[:port]'
  // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means the framing
  // is faulty (a 1.0 hop would read the body differently): refuse, then close.
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined)
    return 'Transfer-Encoding is not allowed in an HTTP/1.0 request'
  return null
}

function refuse(ctx: RequestContext, error: GatehouseError, close = false): false {
  sendProblem(ctx, error, close ? { connection: 'close' } : closeIfBodyUnread(ctx, {}))
  return false
}

/**
 * A reply sent before the request body was read closes an HTTP/1.1
 * connection (RFC 9112 §9.6): reading a body we refused only to keep the
 * connection would let the client make us read it anyway. On HTTP/2 only
 * the stream ends (Node resets an unread one with NO_ERROR, RFC 9113 §8.1).
 */
function closeIfBodyUnread(ctx: RequestContext, headers: ResponseHead['headers']): ResponseHead['headers'] {
  const headersIn = ctx.req.headers
  const hasBody =
    headersIn['transfer-encoding'] !== undefined ||
    (headersIn['content-length'] !== undefined && headersIn['content-length'] !== '0')
  if (hasBody && ctx.req.httpVersionMajor === 1) headers.connection = 'close'
  return headers
}

function route(ctx: RequestContext): boolean {
  const result = ctx.runtime.router.find({
    method: ctx.method,
    host: ctx.host,
    path: ctx.path,
    headers: ctx.req.headers,
    query: ctx.query,
  })
  if (result.kind === 'match') {
    ctx.route = result.route
    ctx.params = result.params
    ctx.matchedPath = result.matched
    return checkBodySize(ctx, result.route)
  }
  // No route: the global plugins still see the request (an IP ban applies to 404s too).
  const pending = runRequestPhases(ctx, ctx.runtime.globalChains, 0, 0)
  const reply = () => {
    if (ctx.replied) return
    if (result.kind === 'method-not-allowed')
      sendProblem(
        ctx,
        new GatehouseError('GH_METHOD_NOT_ALLOWED', `${ctx.method} is not allowed on ${ctx.path}`, {
          headers: { allow: result.allow.join(', ') },
        }),
      )
    else
      sendProblem(
        ctx,
        new GatehouseError('GH_ROUTE_NOT_FOUND', `No route for ${ctx.method} ${ctx.host}${ctx.path}`),
      )
  }
  if (pending === undefined) reply()
  else pending.then(reply).catch((error: unknown) => sendError(ctx, error))
  return false
}

/**
 * A body announced bigger than the route's limit (else the listener's) is
 * refused from its Content-Length, before a byte of it is read or a
 * `100 Continue` is sent. Bodies without a length are counted as they stream (limitBody).
 */
function checkBodySize(ctx: RequestContext, route: CompiledRoute): boolean {
  const max = route.maxBodySize ?? ctx.listener.limits.maxBodySize
  const length = ctx.req.headers['content-length']
  if (length !== undefined && Number(length) > max) {
    const error = new GatehouseError('GH_PAYLOAD_TOO_LARGE', `The request body is larger than ${max} bytes`)
    sendProblem(ctx, error, closeIfBodyUnread(ctx, {}))
    return false
  }
  return true
}

/**
 * Runs the request phases from (phase, handler) on. Synchronous handlers cost
 * no await; the first handler that returns a promise switches to async.
 */
function runRequestPhases(
  ctx: RequestContext,
  chains: PhaseChains,
  fromPhase: number,
  fromHandler: number,
): Promise<void> | undefined {
  for (let p = fromPhase; p < REQUEST_PHASES.length; p++) {
    const handlers = chains[REQUEST_PHASES[p]]
    if (handlers === null) continue
    for (let i = p === fromPhase ? fromHandler : 0; i < handlers.length; i++) {
      const result = handlers[i](ctx)
      if (result !== undefined)
        return result.then(() => (ctx.replied ? undefined : runRequestPhases(ctx, chains, p, i + 1)))
      if (ctx.replied) return undefined
    }
  }
  return undefined
}

export function handle(ctx: RequestContext): void {
  const route = ctx.route!
  const terminal = route.config.terminal
  switch (terminal.kind) {
    case 'proxy': {
      setUpstreamPath(ctx)
      forward(ctx, route.service!, requestBody(ctx, route))
      return
    }
    case 'redirect': {
      // The query goes along unless the target names its own (nginx `rewrite ... redirect`, Envoy's default).
      const to = fillTemplate(terminal.to, ctx, route)
      const location = ctx.query === '' || to.includes('?') ? to : `${to}?${ctx.query}`
      sendLocal(ctx, terminal.status, { location }, '')
      return
    }
    case 'respond': {
      const headers: Record<string, string> = { ...terminal.headers }
      // A JSON body already has application/json (normalize.ts); a text one gets text/plain.
      if (terminal.body !== '' && headers['content-type'] === undefined)
        headers['content-type'] = 'text/plain; charset=utf-8'
      sendLocal(ctx, terminal.status, headers, terminal.body)
      return
    }
  }
}

/** The path and query for the target: the normalized path, rewritten by the route, and the query as it came. */
export function setUpstreamPath(ctx: RequestContext): void {
  const route = ctx.route!
  const path =
    route.rewritePath === null ? ctx.path : route.rewritePath(ctx.path, ctx.matchedPath, ctx.params)
  ctx.upstreamPath = ctx.query === '' ? path : `${path}?${ctx.query}`
}

/**
 * `:name` from params, `$1` / `$<name>` from a regex route's groups, in one
 * pass so a value taken from the path is never expanded again.
 */
function fillTemplate(template: string, ctx: RequestContext, route: CompiledRoute): string {
  const groups =
    route.path.kind === 'regex' && template.includes('$') ? route.path.regex.exec(ctx.path) : null
  return template.replace(
    /:([A-Za-z_][A-Za-z0-9_]*)|\$(\d+)|\$<([A-Za-z_][A-Za-z0-9_]*)>/g,
    (whole, param: string | undefined, n: string | undefined, named: string | undefined) => {
      if (param !== undefined) return ctx.params[param] ?? whole
      if (groups === null) return whole
      if (n !== undefined) return Number(n) < groups.length ? (groups[Number(n)] ?? '') : whole
      return groups.groups?.[named!] ?? whole
    },
  )
}

/**
 * The body to send upstream: none for requests without one, the client stream
 * itself when Content-Length bounds it (llhttp and nghttp2 hold the body to
 * it, and checkBodySize checked it), and a counting iterator otherwise
 * (chunked HTTP/1.1, HTTP/2 DATA without a length) so the size limit holds
 * while streaming (413). A client waiting on `Expect: 100-continue` is told
 * to send the body now, and only now.
 */
function requestBody(ctx: RequestContext, route: CompiledRoute): RequestBody {
  const req = ctx.req
  const headers = req.headers
  const length = headers['content-length']
  // HTTP/1.x: the request is its body's stream; HTTP/2: the stream is.
  const stream = req.httpVersionMajor === 2 ? (req as Http2Request).stream : null
  const source = stream ?? (req as IncomingMessage)
  let body: RequestBody
  if (length !== undefined) body = length === '0' ? null : source
  else if (stream?.endAfterHeaders)
    // END_STREAM on the HEADERS frame: the request has no body (RFC 9113 §8.1).
    body = null
  else if (req.httpVersionMajor === 1 && headers['transfer-encoding'] === undefined)
    // RFC 9112 §6.3: neither Transfer-Encoding nor Content-Length: the body is empty.
    body = null
  else {
    const max = route.maxBodySize ?? ctx.listener.limits.maxBodySize
    body = limitBody(source, max)
  }
  // RFC 9110 §10.1.1: a server that will read the body sends 100 first; an HTTP/1.0 expectation is ignored.
  if (body !== null && headers.expect !== undefined && CONTINUE.test(headers.expect)) {
    if (req.httpVersionMajor === 2 || req.httpVersionMinor >= 1) ctx.res.writeContinue()
  }
  return body
}

/**
 * Passes the body through, failing with 413 as soon as it has grown past
 * `max` bytes; the client's stream stays open for that answer.
 */
async function* limitBody(body: Readable, max: number): AsyncGenerator<Buffer> {
  let total = 0
  for await (const chunk of body.iterator({ destroyOnReturn: false })) {
    total += chunk.length
    if (total > max)
      throw new GatehouseError('GH_PAYLOAD_TOO_LARGE', `The request body is larger than ${max} bytes`)
    yield chunk
  }
}

/** onComplete: access log and plugin hooks; runs once, after the response or the client's abort. */
function complete(ctx: RequestContext): void {
  const runtime = ctx.runtime
  runtime.inflight--
  ctx.upstream?.clientClosed()
  // A client that left before any response was sent has no status (0), not the default 200.
  if (ctx.status === 0 && ctx.res.headersSent) ctx.status = (ctx.res as ServerResponse).statusCode ?? 0
  // A route's chains hold the global plugins already; a null chain there means none, not "use global".
  const chain = ctx.route === null ? runtime.globalChains.onComplete : ctx.route.chains.onComplete
  if (chain !== null)
    for (const handler of chain) {
      try {
        handler(ctx)
      } catch (error) {
        runtime.logger.error({ err: error, reqId: ctx.requestId }, 'onComplete handler failed')
      }
    }
  runtime.accessLog.write(ctx)
}

/**
 * requestTimeout for an HTTP/2 stream. Node's server timeouts watch HTTP/1.1
 * connections only, and an HTTP/2 session with an open stream is never idle,
 * so a client dribbling a body would hold a stream (and its upstream request)
 * forever. A request whose body has not fully arrived in time gets 408, or,
 * when the response has already started, its stream is cancelled
 * (RFC 9113 §8.1: RST_STREAM ends a request early).
 */
function armHttp2RequestTimeout(ctx: RequestContext, req: Http2Request): void {
  const stream = req.stream
  if (stream.endAfterHeaders) return
  const timer = setTimeout(() => {
    if (req.complete) return
    if (!ctx.replied) {
      const seconds = ctx.listener.limits.requestTimeoutMs / 1000
      sendProblem(
        ctx,
        new GatehouseError('GH_REQUEST_TIMEOUT', `The request was not received within ${seconds}s`),
      )
    }
    if (!stream.closed) stream.close(http2Constants.NGHTTP2_CANCEL)
  }, ctx.listener.limits.requestTimeoutMs)
  const clear = () => clearTimeout(timer)
  stream.once('end', clear)
  ctx.res.once('close', clear)
}
