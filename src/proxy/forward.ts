/**
 * The `proxy` terminal: pick a target, dispatch over its undici Pool, stream
 * both bodies with backpressure. Nothing is buffered: the request body is the
 * client's stream, the response body is written chunk by chunk, and a full
 * client socket pauses the upstream read.
 *
 * Every outcome ends in exactly one of: the upstream response relayed whole;
 * a problem+json reply (nothing was sent yet); the client connection cut (the
 * response had started, so the client must see it incomplete, never a clean
 * short one); nothing at all (the client had gone, and the upstream request
 * is cancelled). The handler's callbacks run inside undici's socket events,
 * so none of them may throw.
 */
import type { Dispatcher } from 'undici'
import { GatehouseError } from '../errors.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { ResponseHead } from '../pipeline/plugin.ts'
import { sendError, sendProblem } from '../pipeline/reply.ts'
import type { CompiledService } from '../runtime/runtime.ts'
import type { Target } from '../upstreams/target.ts'
import { cleanResponseHeaders, upstreamRequestHeaders } from './headers.ts'
import { upstreamError } from './upstream-errors.ts'

export function forward(
  ctx: RequestContext,
  service: CompiledService,
  body: Dispatcher.DispatchOptions['body'],
): void {
  const target = service.choose(ctx)
  if (target === null) {
    fail(ctx, new GatehouseError('GH_NO_TARGET', `Service ${service.config.name} has no target available`))
    return
  }
  ctx.target = target
  const route = ctx.route!
  const hostHeader = route.config.preserveHost
    ? (ctx.req.headers.host ?? (ctx.req.headers[':authority'] as string | undefined) ?? target.host)
    : (route.config.hostRewrite ?? target.host)
  const headers = upstreamRequestHeaders(ctx, hostHeader)
  target.state.inflight++
  ctx.upstreamStart = performance.now()
  const options: UpstreamOptions = {
    origin: target.origin,
    path: ctx.upstreamPath,
    method: ctx.method,
    headers,
    body,
    // Fixed per target, not derived from the Host header (see Target.serverName).
    servername: target.serverName ?? undefined,
    headersTimeout: service.config.timeouts.responseMs,
    bodyTimeout: service.config.timeouts.idleMs,
  }
  target.pool.dispatch(options, new ProxyHandler(ctx, service, target))
}

/** undici takes a per-request `servername` (lib/core/request.js) that its types leave out. */
type UpstreamOptions = Dispatcher.DispatchOptions & { servername?: string }

class ProxyHandler implements Dispatcher.DispatchHandler {
  readonly #ctx: RequestContext
  readonly #service: CompiledService
  readonly #target: Target
  #controller: Dispatcher.DispatchController | null = null
  /** The upstream exchange is over (ended or failed); counted out of target.state.inflight once. */
  #done = false
  /** The client's answer is settled elsewhere (client gone, or a plugin answered): later errors only clean up. */
  #abandoned = false
  /** An error of Gatehouse's own making that aborted the exchange; answered as itself, not as an upstream fault. */
  #localError: unknown = null
  /** Resumes the upstream read once the client socket drains; made on the first pause only. */
  #onDrain: (() => void) | null = null

  constructor(ctx: RequestContext, service: CompiledService, target: Target) {
    this.#ctx = ctx
    this.#service = service
    this.#target = target
    ctx.upstream = this
  }

  /** The client connection closed (after the response, or before it ended): cancels an unfinished exchange. */
  clientClosed(): void {
    if (this.#done) return
    this.#abandoned = true
    // undici closes that upstream connection.
    this.#controller?.abort(new Error('client closed the connection'))
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    // The client left while the request waited for a connection.
    if (this.#abandoned) controller.abort(new Error('client closed the connection'))
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    const ctx = this.#ctx
    ctx.upstreamTimeMs = performance.now() - ctx.upstreamStart
    this.#service.report(this.#target, {
      kind: 'response',
      status: statusCode,
      latencyMs: ctx.upstreamTimeMs,
    })
    let head: ResponseHead
    try {
      head = upstreamResponseHead(ctx, statusCode, headers)
      this.#service.decorate(ctx, this.#target, head)
    } catch (error) {
      this.#abort(controller, error)
      return
    }
    if (ctx.replied) {
      // A plugin answered in place of the target: drop the target's response.
      this.#abandoned = true
      controller.abort(new Error('a plugin answered instead'))
      return
    }
    try {
      ctx.res.writeHead(head.status, head.headers as Record<string, string>)
    } catch (error) {
      // A status or field Node refuses to send (e.g. a control character in a value).
      const detail = `${this.#target.origin} sent a response that cannot be relayed (${(error as Error).message})`
      this.#abort(controller, new GatehouseError('GH_UPSTREAM_BAD_RESPONSE', detail, { cause: error }))
      return
    }
    ctx.replied = true
    ctx.status = head.status
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.#ctx.res
    this.#ctx.bytesOut += chunk.length
    if (!res.write(chunk)) {
      controller.pause()
      this.#onDrain ??= () => controller.resume()
      res.once('drain', this.#onDrain)
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Record<string, unknown>): void {
    this.#finish()
    const res = this.#ctx.res
    if (hasFields(trailers)) relayTrailers(this.#ctx, trailers)
    res.end()
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.#finish()
    const ctx = this.#ctx
    if (this.#abandoned || ctx.res.destroyed) return
    if (ctx.replied) {
      // Mid-body failure: cut the connection so the client sees an incomplete
      // response (no last chunk, or short of Content-Length), never a clean one.
      ctx.error = upstreamError(error, this.#target.origin)
      ctx.res.destroy()
      return
    }
    if (ctx.upstreamTimeMs < 0) ctx.upstreamTimeMs = performance.now() - ctx.upstreamStart
    if (error === this.#localError) {
      fail(ctx, error)
      return
    }
    const mapped = upstreamError(error, this.#target.origin)
    this.#service.report(this.#target, { kind: 'failure', error: mapped, latencyMs: ctx.upstreamTimeMs })
    fail(ctx, mapped)
  }

  #abort(controller: Dispatcher.DispatchController, error: unknown): void {
    this.#localError = error
    controller.abort(error as Error)
  }

  #finish(): void {
    if (this.#done) return
    this.#done = true
    this.#target.state.inflight--
  }
}

/**
 * A target's response head as the client gets it: hop-by-hop and hidden
 * fields removed, the request id added, then onUpstreamResponse and
 * transformResponse (reverse plugin order). Throws what a plugin throws.
 */
export function upstreamResponseHead(
  ctx: RequestContext,
  status: number,
  headers: ResponseHead['headers'],
): ResponseHead {
  const global = ctx.runtime.config.global
  const clean = cleanResponseHeaders(headers, global.hideUpstreamHeaders)
  // RFC 9110 §8.6: no Content-Length on a 204 (a 304's describes the selected representation and stays).
  if (status === 204 && clean['content-length'] !== undefined) delete clean['content-length']
  clean[global.requestIdHeader] = ctx.requestId
  const head: ResponseHead = { status, headers: clean }
  const chains = ctx.route!.chains
  if (chains.onUpstreamResponse !== null) for (const handler of chains.onUpstreamResponse) handler(ctx, head)
  if (chains.transformResponse !== null) for (const handler of chains.transformResponse) handler(ctx, head)
  return head
}

/**
 * The proxy path's error reply; never throws. A reply sent while the request
 * body is still arriving closes the connection (RFC 9112 §9.6): the rest of
 * the body is not worth reading. A complete request keeps the connection.
 */
export function fail(ctx: RequestContext, error: unknown): void {
  try {
    if (error instanceof GatehouseError) sendProblem(ctx, error, connectionClose(ctx))
    else sendError(ctx, error)
  } catch (replyError) {
    // A transformResponse plugin threw on the problem reply itself; sendError then cuts the connection.
    try {
      sendError(ctx, replyError)
    } catch {
      ctx.res.destroy()
    }
  }
}

/**
 * Trailer fields (RFC 9110 §6.5) reach the client when its response is chunked
 * (or HTTP/2); with a Content-Length Node drops them, as a recipient may.
 */
function relayTrailers(ctx: RequestContext, trailers: Record<string, unknown>): void {
  const clean = cleanResponseHeaders(trailers, ctx.runtime.config.global.hideUpstreamHeaders)
  try {
    ctx.res.addTrailers(clean as Record<string, string>)
  } catch {
    // A field Node refuses to send is dropped with the rest: trailers are optional to the recipient.
  }
}

function hasFields(object: object): boolean {
  for (const _ in object) return true
  return false
}

function connectionClose(ctx: RequestContext): ResponseHead['headers'] {
  // `complete`, not `readableEnded`: a body-less request that nobody read never emits 'end'.
  return ctx.req.httpVersionMajor === 1 && !ctx.req.complete ? { connection: 'close' } : {}
}
