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
  const chain = ctx.route?.chains.transformResponse ?? ctx.runtime.globalChains.transformResponse
  if (chain !== null) for (const handler of chain) handler(ctx, head)
  const bytes = typeof body === 'string' ? Buffer.from(body) : body
  head.headers['content-length'] = bytes.length
  ctx.status = head.status
  ctx.bytesOut = bytes.length
  res.writeHead(head.status, head.headers as Record<string, string>)
  if (ctx.method === 'HEAD') res.end()
  else res.end(bytes)
}

export function sendProblem(
  ctx: RequestContext,
  error: GatehouseError,
  extraHeaders?: ResponseHead['headers'],
): void {
  ctx.error = error
  const spec = ERRORS[error.code]
  const body = JSON.stringify({
    type: problemType(error.code),
    title: spec.title,
    status: error.status,
    detail: error.message,
    code: error.code,
    instance: ctx.path,
    requestId: ctx.requestId,
  })
  sendLocal(
    ctx,
    error.status,
    {
      'content-type': 'application/problem+json',
      'cache-control': 'no-store',
      ...error.headers,
      ...extraHeaders,
    },
    body,
  )
}

/** Any thrown value -> problem reply; unexpected errors are logged and answered 500. */
export function sendError(ctx: RequestContext, error: unknown): void {
  if (error instanceof GatehouseError) {
    sendProblem(ctx, error)
    return
  }
  ctx.runtime.logger.error({ err: error, reqId: ctx.requestId }, 'unexpected error while handling a request')
  sendProblem(
    ctx,
    new GatehouseError('GH_INTERNAL', 'The gateway failed to handle this request', { cause: error }),
  )
}
