/**
 * One request through the phases:
 *   accept checks -> route -> onRequest -> authenticate -> authorize
 *   -> transformRequest -> handle (terminal) -> response phases -> onComplete
 * Any phase before handle may answer locally; every error takes sendError.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest } from 'node:http2'
import type { Dispatcher } from 'undici'
import { GatehouseError } from '../errors.ts'
import { unmapIpv4 } from '../net/ip.ts'
import { forward } from '../proxy/forward.ts'
import type { CompiledListener, CompiledRoute, PhaseChains, Runtime } from '../runtime/runtime.ts'
import { type ClientRequest, type ClientResponse, RequestContext } from './context.ts'
import { REQUEST_PHASES } from './phases.ts'
import { sendError, sendLocal, sendProblem } from './reply.ts'
import { clientIpFrom, hostOnly, normalizePath, requestIdFrom } from './request-facts.ts'

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
  res.once('close', () => complete(ctx))
  try {
    if (!accept(ctx)) return
    if (!route(ctx)) return
    const chains = ctx.route!.chains
    const pending = runRequestPhases(ctx, chains, 0, 0)
    if (pending === undefined) {
      if (!ctx.replied) terminal(ctx)
    } else {
      pending.then(
        () => {
          if (!ctx.replied) terminal(ctx)
        },
        (error) => sendError(ctx, error),
      )
    }
  } catch (error) {
    sendError(ctx, error)
  }
}

export function createContext(
  runtime: Runtime,
  listener: CompiledListener,
  req: ClientRequest,
  res: ClientResponse,
): RequestContext {
  const url = req.url ?? '/'
  const queryAt = url.indexOf('?')
  const rawPath = queryAt === -1 ? url : url.slice(0, queryAt)
  const peerIp = unmapIpv4(req.socket?.remoteAddress ?? '')
  const headers = req.headers
  return new RequestContext({
    req,
    res,
    runtime,
    listener,
    requestId: requestIdFrom(headers[runtime.config.global.requestIdHeader]),
    method: req.method ?? 'GET',
    host: hostOnly(headers.host ?? (headers[':authority'] as string | undefined)),
    path: rawPath.startsWith('/') ? normalizePath(rawPath) : rawPath,
    query: queryAt === -1 ? '' : url.slice(queryAt + 1),
    peerIp,
    clientIp: clientIpFrom(peerIp, headers['x-forwarded-for'], runtime.trustedProxies),
    secure: listener.config.tls !== null,
  })
}

/** Listener-level checks: redirect to HTTPS, URL length, header count, body size, request target form. */
function accept(ctx: RequestContext): boolean {
  const { limits, config } = ctx.listener
  const req = ctx.req
  if (config.redirectToHttps !== null) {
    const port = config.redirectToHttps.port === 443 ? '' : `:${config.redirectToHttps.port}`
    const location = `https://${ctx.host}${port}${req.url ?? '/'}`
    sendLocal(ctx, config.redirectToHttps.status, { location }, '')
    return false
  }
  if ((req.url ?? '').length > limits.maxUrlLength) {
    sendProblem(
      ctx,
      new GatehouseError('GH_URI_TOO_LONG', `The request target is longer than ${limits.maxUrlLength} bytes`),
    )
    return false
  }
  if (req.rawHeaders.length / 2 > limits.maxHeaderCount) {
    const error = new GatehouseError(
      'GH_HEADERS_TOO_LARGE',
      `More than ${limits.maxHeaderCount} header fields`,
    )
    sendProblem(ctx, error, { connection: 'close' })
    return false
  }
  if (!ctx.path.startsWith('/')) {
    sendProblem(
      ctx,
      new GatehouseError('GH_BAD_REQUEST', 'The request target must be a path (origin-form)'),
      {
        connection: 'close',
      },
    )
    return false
  }
  return true
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
  else pending.then(reply, (error) => sendError(ctx, error))
  return false
}

function checkBodySize(ctx: RequestContext, route: CompiledRoute): boolean {
  const max = route.maxBodySize ?? ctx.listener.limits.maxBodySize
  const length = ctx.req.headers['content-length']
  if (length !== undefined && Number(length) > max) {
    sendProblem(
      ctx,
      new GatehouseError('GH_PAYLOAD_TOO_LARGE', `The request body is larger than ${max} bytes`),
      {
        connection: 'close',
      },
    )
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
      const location = fillTemplate(terminal.to, ctx, route)
      sendLocal(ctx, terminal.status, { location }, '')
      return
    }
    case 'respond':
      sendLocal(ctx, terminal.status, { ...terminal.headers }, terminal.body)
      return
  }
}

export function setUpstreamPath(ctx: RequestContext): void {
  const route = ctx.route!
  const path =
    route.rewritePath === null ? ctx.path : route.rewritePath(ctx.path, ctx.matchedPath, ctx.params)
  ctx.upstreamPath = ctx.query === '' ? path : `${path}?${ctx.query}`
}

/** `:name` from params, `$1` from a regex route's groups. */
function fillTemplate(template: string, ctx: RequestContext, route: CompiledRoute): string {
  let out = template.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (whole, name: string) => ctx.params[name] ?? whole)
  if (route.path.kind === 'regex' && out.includes('$')) {
    const match = route.path.regex.exec(ctx.path)
    if (match) out = out.replace(/\$(\d)/g, (_, n: string) => match[Number(n)] ?? '')
  }
  return out
}

/**
 * The body to send upstream: none for requests without one, the client stream
 * itself when Content-Length bounds it (llhttp enforces the length), and a
 * counting iterator for chunked bodies so the size limit holds (413).
 */
function requestBody(ctx: RequestContext, route: CompiledRoute): Dispatcher.DispatchOptions['body'] {
  const headers = ctx.req.headers
  const length = headers['content-length']
  if (length !== undefined) return length === '0' ? null : (ctx.req as IncomingMessage)
  if (ctx.req.httpVersionMajor === 2) {
    // END_STREAM on the HEADERS frame: the request has no body (RFC 9113 §8.1).
    if ((ctx.req as Http2ServerRequest).stream.endAfterHeaders) return null
  } else if (headers['transfer-encoding'] === undefined) return null
  const max = route.maxBodySize ?? ctx.listener.limits.maxBodySize
  return limitBody(ctx.req, max) as unknown as Dispatcher.DispatchOptions['body']
}

async function* limitBody(body: AsyncIterable<Buffer>, max: number): AsyncGenerator<Buffer> {
  let total = 0
  for await (const chunk of body) {
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
  if (ctx.status === 0) ctx.status = (ctx.res as ServerResponse).statusCode ?? 0
  const chain = ctx.route?.chains.onComplete ?? runtime.globalChains.onComplete
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
