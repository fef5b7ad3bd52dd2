/**
 * The one path to a reply Gatehouse makes itself: transformResponse runs on
 * it (reverse plugin order) like on any response, then it is written. Errors
 * become RFC 9457 problem+json with a stable type, title, status, detail and
 * the request id.
 */
import { ERRORS, GatehouseError, problemType } from '../errors.ts'
import type { RequestContext } from './context.ts'
import type { ResponseHead } from './plugin.ts'

export function sendLocal(
  ctx: RequestContext,
  status: number,
  headers: ResponseHead['headers'],
  body: string | Buffer,
): void {
  const res = ctx.res
  if (ctx.replied || res.headersSent) {
    // Too late for a clean answer: the client must see the response cut, not complete.
    res.destroy()
    return
  }
  ctx.replied = true
  const head: ResponseHead = { status, headers }
  head.headers[ctx.runtime.config.global.requestIdHeader] = ctx.requestId
  // A route's chains already hold the global plugins (or their overrides); only
  // a request without a route takes the global chains.
  const chain =
    ctx.route === null ? ctx.runtime.globalChains.transformResponse : ctx.route.chains.transformResponse
  try {
    if (chain !== null) for (const handler of chain) handler(ctx, head)
  } catch (error) {
    // The error reply cannot go through the chain that just failed (it would
    // fail again): it is written as it is, without the response phases.
    const problem = asGatehouseError(ctx, error)
    ctx.error = problem
    write(ctx, problem.status, problemHeaders(ctx, problem), problemBody(ctx, problem))
    return
  }
  write(ctx, head.status, head.headers, body)
}

export function sendProblem(
  ctx: RequestContext,
  error: GatehouseError,
  extraHeaders?: ResponseHead['headers'],
): void {
  ctx.error = error
  sendLocal(ctx, error.status, problemHeaders(ctx, error, extraHeaders), problemBody(ctx, error))
}

/** Any thrown value -> problem reply; unexpected errors are logged and answered 500. */
export function sendError(ctx: RequestContext, error: unknown): void {
  sendProblem(ctx, asGatehouseError(ctx, error))
}

/**
 * A GatehouseError as it is; anything else is a bug somewhere (a plugin, the
 * gateway): logged with its stack and turned into 500 GH_INTERNAL, whose
 * detail says nothing about the cause (that stays in the log).
 */
export function asGatehouseError(ctx: RequestContext, error: unknown): GatehouseError {
  if (error instanceof GatehouseError) return error
  ctx.runtime.logger.error({ err: error, reqId: ctx.requestId }, 'unexpected error while handling a request')
  return new GatehouseError('GH_INTERNAL', 'The gateway failed to handle this request', { cause: error })
}

/** RFC 9457 §3: the standard members, plus the stable `code` and the request id as extensions. */
function problemBody(ctx: RequestContext, error: GatehouseError): string {
  return JSON.stringify({
    type: problemType(error.code),
    title: ERRORS[error.code].title,
    status: error.status,
    detail: error.message,
    code: error.code,
    instance: ctx.path,
    requestId: ctx.requestId,
  })
}

function problemHeaders(
  ctx: RequestContext,
  error: GatehouseError,
  extraHeaders?: ResponseHead['headers'],
): ResponseHead['headers'] {
  return {
    'content-type': 'application/problem+json',
    'cache-control': 'no-store',
    ...error.headers,
    ...extraHeaders,
    [ctx.runtime.config.global.requestIdHeader]: ctx.requestId,
  }
}

function write(ctx: RequestContext, status: number, headers: ResponseHead['headers'], body: string | Buffer) {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body
  headers['content-length'] = bytes.length
  try {
    ctx.res.writeHead(status, headers as Record<string, string>)
  } catch (error) {
    // A plugin set a field Node refuses to send (RFC 9110 §5.5: no CR, LF or
    // NUL): nothing was written yet, so answer 500 with our own fields only.
    const problem = asGatehouseError(ctx, error)
    ctx.error = problem
    write(ctx, problem.status, problemHeaders(ctx, problem), problemBody(ctx, problem))
    return
  }
  ctx.status = status
  ctx.bytesOut = ctx.method === 'HEAD' ? 0 : bytes.length
  if (ctx.method === 'HEAD') ctx.res.end()
  else ctx.res.end(bytes)
}
