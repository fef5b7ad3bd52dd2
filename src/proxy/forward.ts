/**
 * The `proxy` terminal: pick a target, dispatch over its connection pool, stream
 * both bodies with backpressure. The response body is written chunk by
 * chunk, and a full client socket pauses the upstream read; the request body
 * is the client's stream, except where a retry may need it again (below).
 *
 * Every outcome ends in exactly one of: the upstream response relayed whole;
 * a problem+json reply (nothing was sent yet); the client connection cut (the
 * response had started, so the client must see it incomplete, never a clean
 * short one); nothing at all (the client had gone, and the upstream request
 * is cancelled). The handler's callbacks run inside the pool's socket events,
 * so none of them may throw.
 *
 * Retries (the service's `retries`): a try that fails before any response
 * byte (connect failure, reset, no head within the per-try timeout) or
 * answers a retried status is tried again on a target not tried yet, after a
 * jittered backoff, within the attempts and the service's retry budget. Only
 * for the configured methods, and only with a body small enough to have been
 * kept. A request that cannot be retried and has no total timeout takes the
 * plain path: one handler, no Exchange, no buffering.
 */
import type { RetryCondition, RetryConfig } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { ResponseHead } from '../pipeline/plugin.ts'
import { sendError, sendProblem } from '../pipeline/reply.ts'
import type { CompiledService } from '../runtime/runtime.ts'
import type {
  FieldValues,
  RequestBody,
  UpstreamController,
  UpstreamHandler,
  UpstreamRequest,
} from '../upstreams/http1/handler.ts'
import type { Target } from '../upstreams/target.ts'
import { cleanResponseHeaders, upstreamRequestHeaders } from './headers.ts'
import { backoffMs, keepBody, retryCondition } from './retry.ts'
import { upstreamError } from './upstream-errors.ts'

export function forward(ctx: RequestContext, service: CompiledService, body: RequestBody): void {
  const retries = service.config.retries
  const totalMs = ctx.route!.config.timeouts?.totalMs ?? service.config.timeouts.totalMs
  const retriable = retries.attempts > 1 && retries.methods.includes(ctx.method)
  if (retriable && body !== null) {
    const length = ctx.req.headers['content-length']
    if (
      retries.bufferBodyBytes > 0 &&
      (length === undefined || Number(length) <= retries.bufferBodyBytes) &&
      isAsyncIterable(body)
    ) {
      forwardKept(ctx, service, body, retries.bufferBodyBytes, totalMs)
      return
    }
    // Too big to keep: streamed as it comes, and a failure is the client's answer.
    start(ctx, service, body, false, totalMs)
    return
  }
  start(ctx, service, body, retriable, totalMs)
}

function start(
  ctx: RequestContext,
  service: CompiledService,
  body: RequestBody,
  retriable: boolean,
  totalMs: number,
): void {
  if (!retriable && totalMs === 0) {
    const target = firstTarget(ctx, service)
    if (target !== null) dispatchTry(ctx, service, target, body, null, false)
    return
  }
  new Exchange(ctx, service, body, retriable, totalMs).begin()
}

/** The first try's target; null when the client has been answered (no target, or a circuit breaker refused: 503). */
function firstTarget(ctx: RequestContext, service: CompiledService): Target | null {
  let target: Target | null
  try {
    target = service.choose(ctx)
  } catch (error) {
    // GH_CIRCUIT_OPEN from a breaker (service.ts); this may run after the body was kept, outside handle's catch.
    fail(ctx, error)
    return null
  }
  if (target === null) fail(ctx, noTarget(service))
  return target
}

/** Reads a small body whole before the first try, so a retry can send it again. */
function forwardKept(
  ctx: RequestContext,
  service: CompiledService,
  body: AsyncIterable<Buffer>,
  limit: number,
  totalMs: number,
): void {
  keepBody(body, limit).then(
    (kept) => {
      // The client left (or a timeout answered) while its body arrived.
      if (ctx.replied || ctx.res.destroyed) return
      start(ctx, service, kept.body as unknown as RequestBody, kept.whole, totalMs)
    },
    (error: unknown) => {
      // A 413 from the body limit; a client that went away has nobody to answer.
      if (!ctx.replied && !ctx.res.destroyed) fail(ctx, error)
    },
  )
}

function isAsyncIterable(body: RequestBody): body is RequestBody & AsyncIterable<Buffer> {
  return typeof body === 'object' && body !== null && Symbol.asyncIterator in body
}

function noTarget(service: CompiledService): GatehouseError {
  return new GatehouseError('GH_NO_TARGET', `Service ${service.config.name} has no target available`)
}

/** Sends one try to `target`. `holdsRetry`: this try is a retry and gives its budget share back when it ends. */
function dispatchTry(
  ctx: RequestContext,
  service: CompiledService,
  target: Target,
  body: RequestBody,
  exchange: Exchange | null,
  holdsRetry: boolean,
): void {
  const route = ctx.route!
  const hostHeader = route.config.preserveHost
    ? (ctx.req.headers.host ?? (ctx.req.headers[':authority'] as string | undefined) ?? target.host)
    : (route.config.hostRewrite ?? target.host)
  const headers = upstreamRequestHeaders(ctx, hostHeader)
  ctx.target = target
  const now = performance.now()
  if (ctx.attempts++ === 0) ctx.upstreamStart = now
  target.state.inflight++
  const timeouts = service.config.timeouts
  const overrides = route.config.timeouts
  const responseMs = overrides?.responseMs ?? timeouts.responseMs
  const options: UpstreamRequest = {
    path: ctx.upstreamPath,
    method: ctx.method,
    headers,
    body,
    headersTimeout: tighter(responseMs, service.config.retries.perTryTimeoutMs),
    bodyTimeout: overrides?.idleMs ?? timeouts.idleMs,
  }
  target.pool.dispatch(options, new ProxyHandler(ctx, service, target, exchange, holdsRetry, now))
}

/** The shorter of two timeouts where 0 (the pool's "none") and null mean no limit. */
function tighter(ms: number, other: number | null): number {
  if (other === null || other === 0) return ms
  return ms === 0 ? other : Math.min(ms, other)
}

/** A retried response's body is read and dropped (the connection stays reusable) up to this; beyond, the try is aborted. */
const DISCARD_LIMIT = 64 * 1024
/** Up to this size, a whole body arriving in one chunk joins the head in one write (HTTP/1.x). */
const ONE_WRITE_MAX = 4096

/**
 * One request's tries: the retry decisions, the backoff between tries, and
 * the total timeout over all of them. Made only when a retry can happen or a
 * total timeout is set.
 */
class Exchange {
  readonly #ctx: RequestContext
  readonly #service: CompiledService
  readonly #body: RequestBody
  readonly #retries: RetryConfig | null
  /** Targets already tried, a retry goes elsewhere; made by the first retry (most requests have one try). */
  #tried: Set<Target> | null = null
  #first: Target | null = null
  #backoff: NodeJS.Timeout | null = null
  #total: NodeJS.Timeout | null = null
  /** The client's answer is settled (total timeout, client gone): no more tries. */
  #over = false
  /** The try in flight, told when the total timeout expires. */
  #current: ProxyHandler | null = null
  /** Counted in the retry budget's requests in flight until #end. */
  #counted = true

  constructor(
    ctx: RequestContext,
    service: CompiledService,
    body: RequestBody,
    retriable: boolean,
    totalMs: number,
  ) {
    this.#ctx = ctx
    this.#service = service
    this.#body = body
    this.#retries = retriable ? service.config.retries : null
    service.retryBudget.requests++
    if (totalMs > 0) this.#total = setTimeout(() => this.#expire(totalMs), totalMs)
  }

  begin(): void {
    const target = firstTarget(this.#ctx, this.#service)
    if (target === null) this.#end()
    else this.#send(target, false)
  }

  attach(handler: ProxyHandler): void {
    this.#current = handler
  }

  /**
   * After a failed try: schedules the next one and returns true, or returns
   * false when the failure is the answer (not retried, attempts or budget
   * spent, no other target).
   */
  retry(reason: RetryCondition | number): boolean {
    const retries = this.#retries
    const ctx = this.#ctx
    if (retries === null || this.#over || ctx.replied || ctx.attempts >= retries.attempts) return false
    if (typeof reason === 'number' ? !retries.statuses.includes(reason) : !retries.on.includes(reason))
      return false
    const service = this.#service
    this.#tried ??= new Set([this.#first!])
    // The budget first: choosing can take a half-open breaker's trial slot, which must not go unused.
    if (!service.retryBudget.acquire(service.targets)) return false
    let next: Target | null
    try {
      next = service.choose(ctx, this.#tried)
    } catch {
      // An open breaker refuses the retry: the failure in hand is the answer.
      next = null
    }
    if (next === null) {
      service.retryBudget.release()
      return false
    }
    const delay = backoffMs(ctx.attempts, retries.backoff.baseMs, retries.backoff.maxMs)
    this.#current = null
    ctx.upstream = this
    this.#backoff = setTimeout(() => {
      this.#backoff = null
      this.#send(next, true)
    }, delay)
    return true
  }

  /** The client connection closed: the response is over or abandoned; stop waiting. */
  clientClosed(): void {
    this.#over = true
    this.#end()
  }

  /** The exchange is settled: no timers left, no longer a request in flight. */
  #end(): void {
    if (!this.#counted) return
    this.#counted = false
    this.#service.retryBudget.requests--
    if (this.#total !== null) clearTimeout(this.#total)
    this.#total = null
    if (this.#backoff !== null) {
      clearTimeout(this.#backoff)
      this.#backoff = null
      // The retry admitted for this backoff never ran.
      this.#service.retryBudget.release()
    }
  }

  #send(target: Target, holdsRetry: boolean): void {
    if (this.#tried === null) this.#first = target
    else this.#tried.add(target)
    dispatchTry(this.#ctx, this.#service, target, this.#body, this, holdsRetry)
  }

  #expire(totalMs: number): void {
    this.#total = null
    const ctx = this.#ctx
    if (this.#over || ctx.res.writableFinished) return
    this.#over = true
    const error = new GatehouseError(
      'GH_UPSTREAM_TIMEOUT',
      `The upstream exchange took longer than ${totalMs / 1000}s`,
    )
    this.#end()
    if (this.#current !== null) this.#current.cancel(error)
    else if (!ctx.replied) fail(ctx, error)
  }

  /** Called by the handler when the exchange's last try is over, whatever the outcome. */
  done(): void {
    this.#over = true
    this.#end()
  }
}

class ProxyHandler implements UpstreamHandler {
  readonly #ctx: RequestContext
  readonly #service: CompiledService
  readonly #target: Target
  readonly #exchange: Exchange | null
  /** This try is a retry: its share of the retry budget is given back when it ends. */
  readonly #holdsRetry: boolean
  /** When this try was sent; its latency is reported from here. */
  readonly #start: number
  #controller: UpstreamController | null = null
  /** The upstream exchange is over (ended or failed); counted out of target.state.inflight once. */
  #done = false
  /** The client's answer is settled elsewhere (client gone, or a plugin answered): later errors only clean up. */
  #abandoned = false
  /** An error of Gatehouse's own making that aborted the exchange; answered as itself, not as an upstream fault. */
  #localError: unknown = null
  /** A retried status: its body is read and dropped, then the try ends quietly (the next try answers). */
  #discarded = -1
  /** Resumes the upstream read once the client socket drains; made on the first pause only. */
  #onDrain: (() => void) | null = null
  /**
   * Body bytes still to come by the target's Content-Length, -1 when the
   * length is not known. The chunk that completes the body is written with
   * res.end(chunk) (one call instead of write then end); the pool reports the
   * response's end within the same parser run.
   */
  #remaining = -1

  constructor(
    ctx: RequestContext,
    service: CompiledService,
    target: Target,
    exchange: Exchange | null,
    holdsRetry: boolean,
    start: number,
  ) {
    this.#ctx = ctx
    this.#service = service
    this.#target = target
    this.#exchange = exchange
    this.#holdsRetry = holdsRetry
    this.#start = start
    ctx.upstream = this
    if (exchange !== null) {
      exchange.attach(this)
      service.retryBudget.tries++
    }
  }

  /** The client connection closed (after the response, or before it ended): cancels an unfinished exchange. */
  clientClosed(): void {
    this.#exchange?.clientClosed()
    // Done, or the body's last byte ended the client's response (#remaining): the target's
    // message completes within the same read, and its connection stays reusable. The pool runs
    // queued ticks between parser callbacks, so this can come between those two.
    if (this.#done || this.#remaining === 0) return
    this.#abandoned = true
    // The pool closes that upstream connection.
    this.#controller?.abort(new Error('client closed the connection'))
  }

  /** The total timeout expired: answer with `error` (504) now, or cut a response already started. */
  cancel(error: GatehouseError): void {
    if (this.#done) return
    if (this.#controller !== null) {
      this.#abort(this.#controller, error)
      return
    }
    // Still waiting for a connection: answer now; onRequestStart aborts the try when it comes.
    this.#abandoned = true
    fail(this.#ctx, error)
  }

  onRequestStart(controller: UpstreamController): void {
    this.#controller = controller
    // The client left (or the total timeout answered) while the request waited for a connection.
    if (this.#abandoned) controller.abort(new Error('client closed the connection'))
  }

  onResponseStart(controller: UpstreamController, statusCode: number, headers: FieldValues): void {
    const ctx = this.#ctx
    const now = performance.now()
    const latencyMs = now - this.#start
    this.#service.report(this.#target, { kind: 'response', status: statusCode, latencyMs })
    if (this.#exchange?.retry(statusCode)) {
      this.#discarded = 0
      return
    }
    ctx.upstreamTimeMs = now - ctx.upstreamStart
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
    const length = headers['content-length']
    // RFC 9110 §6.4.1: no body for HEAD, 1xx, 204 and 304, whatever Content-Length says.
    if (typeof length === 'string' && ctx.method !== 'HEAD' && statusCode !== 204 && statusCode !== 304)
      this.#remaining = Number(length)
  }

  onResponseData(controller: UpstreamController, chunk: Buffer): void {
    if (this.#discarded >= 0) {
      this.#discarded += chunk.length
      if (this.#discarded > DISCARD_LIMIT) controller.abort(new Error('retried response body dropped'))
      return
    }
    const res = this.#ctx.res
    this.#ctx.bytesOut += chunk.length
    if (chunk.length === this.#remaining) {
      this.#remaining = 0
      if (
        chunk.length <= ONE_WRITE_MAX &&
        this.#ctx.bytesOut === chunk.length &&
        this.#ctx.req.httpVersionMajor === 1
      )
        // The whole body in one small chunk: as a latin1 string (bytes map 1:1)
        // node:http writes it with the head in one write, instead of a writev of two buffers.
        res.end(chunk.toString('latin1'), 'latin1')
      else res.end(chunk)
      return
    }
    if (this.#remaining > 0) this.#remaining -= chunk.length
    if (!res.write(chunk)) {
      controller.pause()
      this.#onDrain ??= () => controller.resume()
      res.once('drain', this.#onDrain)
    }
  }

  onResponseEnd(_controller: UpstreamController, trailers: Record<string, unknown>): void {
    this.#finish()
    if (this.#discarded >= 0) return
    this.#exchange?.done()
    // Ended with its last chunk already (a body with Content-Length has no trailers).
    if (this.#remaining === 0 && this.#ctx.res.writableEnded) return
    const res = this.#ctx.res
    if (hasFields(trailers)) relayTrailers(this.#ctx, trailers)
    res.end()
  }

  onResponseError(_controller: UpstreamController, error: Error): void {
    this.#finish()
    // A retried status whose body could not be dropped cleanly: the next try answers.
    if (this.#discarded >= 0) return
    const ctx = this.#ctx
    if (this.#abandoned || ctx.res.destroyed) {
      this.#exchange?.done()
      return
    }
    if (ctx.replied) {
      this.#exchange?.done()
      // Mid-body failure: cut the connection so the client sees an incomplete
      // response (no last chunk, or short of Content-Length), never a clean one.
      ctx.error = upstreamError(error, this.#target.origin)
      ctx.res.destroy()
      return
    }
    if (ctx.upstreamTimeMs < 0) ctx.upstreamTimeMs = performance.now() - ctx.upstreamStart
    if (this.#localError !== null) {
      this.#exchange?.done()
      fail(ctx, this.#localError)
      return
    }
    const mapped = upstreamError(error, this.#target.origin)
    this.#service.report(this.#target, {
      kind: 'failure',
      error: mapped,
      latencyMs: performance.now() - this.#start,
    })
    const exchange = this.#exchange
    if (exchange !== null) {
      const condition = retryCondition(error)
      if (condition !== null && exchange.retry(condition)) {
        // The next try decides the answer (and its upstreamTimeMs).
        ctx.upstreamTimeMs = -1
        return
      }
      exchange.done()
    }
    fail(ctx, mapped)
  }

  #abort(controller: UpstreamController, error: unknown): void {
    this.#localError = error
    controller.abort(error as Error)
  }

  #finish(): void {
    if (this.#done) return
    this.#done = true
    this.#target.state.inflight--
    if (this.#exchange !== null) this.#service.retryBudget.tries--
    if (this.#holdsRetry) this.#service.retryBudget.release()
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
