/**
 * The `proxy` terminal: pick a target, dispatch over its undici Pool, stream
 * both bodies with backpressure. Nothing is buffered: the request body is the
 * client's stream, the response body is written chunk by chunk, and a full
 * client socket pauses the upstream read.
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
  const target = service.balancer.pick(ctx)
  if (target === null)
    throw new GatehouseError('GH_NO_TARGET', `Service ${service.config.name} has no target available`)
  ctx.target = target
  const route = ctx.route!
  const hostHeader = route.config.preserveHost
    ? (ctx.req.headers.host ?? (ctx.req.headers[':authority'] as string | undefined) ?? target.host)
    : (route.config.hostRewrite ?? target.host)
  const headers = upstreamRequestHeaders(ctx, hostHeader)
  target.inflight++
  ctx.upstreamStart = performance.now()
  const handler = new ProxyHandler(ctx, target)
  target.pool.dispatch(
    {
      origin: target.origin,
      path: ctx.upstreamPath,
      method: ctx.method,
      headers,
      body,
      headersTimeout: service.config.timeouts.responseMs,
      bodyTimeout: service.config.timeouts.idleMs,
    },
    handler,
  )
}

class ProxyHandler implements Dispatcher.DispatchHandler {
  readonly #ctx: RequestContext
  readonly #target: Target
  #controller: Dispatcher.DispatchController | null = null
  #done = false

  constructor(ctx: RequestContext, target: Target) {
    this.#ctx = ctx
    this.#target = target
    // A client that goes away cancels the upstream request.
    ctx.res.once('close', () => {
      if (!this.#done) this.#controller?.abort(new Error('client closed the connection'))
    })
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#ctx.res.destroyed) controller.abort(new Error('client closed the connection'))
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    const ctx = this.#ctx
    ctx.upstreamTimeMs = performance.now() - ctx.upstreamStart
    if (ctx.res.destroyed) {
      controller.abort(new Error('client closed the connection'))
      return
    }
    cleanResponseHeaders(headers, ctx.runtime.config.global.hideUpstreamHeaders)
    headers[ctx.runtime.config.global.requestIdHeader] = ctx.requestId
    const head: ResponseHead = { status: statusCode, headers }
    const chains = ctx.route!.chains
    try {
      if (chains.onUpstreamResponse !== null)
        for (const handler of chains.onUpstreamResponse) handler(ctx, head)
      if (chains.transformResponse !== null)
        for (const handler of chains.transformResponse) handler(ctx, head)
    } catch (error) {
      controller.abort(error as Error)
      return
    }
    ctx.replied = true
    ctx.status = head.status
    ctx.res.writeHead(head.status, head.headers as Record<string, string>)
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.#ctx.res
    this.#ctx.bytesOut += chunk.length
    if (!res.write(chunk)) {
      controller.pause()
      res.once('drain', () => controller.resume())
    }
  }

  onResponseEnd(): void {
    this.#finish()
    this.#ctx.res.end()
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.#finish()
    const ctx = this.#ctx
    if (ctx.res.destroyed) return
    if (ctx.replied) {
      // Mid-body failure: cut the connection so the client sees an incomplete
      // response (no last chunk / short of Content-Length), never a clean one.
      ctx.error = upstreamError(error, this.#target.origin)
      ctx.res.destroy()
      return
    }
    if (error instanceof GatehouseError) {
      sendProblem(ctx, error, connectionClose(ctx))
      return
    }
    const mapped = upstreamError(error, this.#target.origin)
    if (ctx.upstreamTimeMs < 0) ctx.upstreamTimeMs = performance.now() - ctx.upstreamStart
    try {
      sendProblem(ctx, mapped)
    } catch (replyError) {
      sendError(ctx, replyError)
    }
  }

  #finish(): void {
    if (this.#done) return
    this.#done = true
    this.#target.inflight--
  }
}

/** A reply sent before the request body was read must close the connection (RFC 9112 §9.6). */
function connectionClose(ctx: RequestContext): ResponseHead['headers'] {
  return ctx.req.httpVersionMajor === 1 && !ctx.req.readableEnded ? { connection: 'close' } : {}
}
