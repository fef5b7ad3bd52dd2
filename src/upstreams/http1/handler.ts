/**
 * The contract between the upstream client and its caller: undici's
 * `dispatch(options, handler)` shape (callbacks named in time order), so the
 * proxy's handler reads the same whichever client carries it.
 */
import type { Readable } from 'node:stream'

export type FieldValues = Record<string, string | string[]>

export type RequestBody = null | string | Buffer | Readable | AsyncIterable<Buffer>

/**
 * Reads a streamed body chunk by chunk. A Readable is not destroyed when its
 * reader stops early (`destroyOnReturn: false`): it is the client's request,
 * answered separately, and destroying it would cut that answer (the
 * connection on HTTP/1.1, the stream on HTTP/2).
 */
export function bodyChunks(body: Readable | AsyncIterable<Buffer>): AsyncIterator<Buffer> {
  return isReadable(body) ? body.iterator({ destroyOnReturn: false }) : body[Symbol.asyncIterator]()
}

export function isReadable(body: object): body is Readable {
  return typeof (body as Readable).iterator === 'function' && typeof (body as Readable).pipe === 'function'
}

export interface UpstreamRequest {
  readonly method: string
  /** The request-target (origin-form: path and query). */
  readonly path: string
  /** Flat [name, value, ...]; `host` is the caller's to give (added from the origin when missing). */
  readonly headers: readonly string[]
  readonly body?: RequestBody
  /** From the request written until the response head, in ms; 0: no limit. */
  readonly headersTimeout?: number
  /** Silence allowed between response body bytes, in ms; 0: no limit. */
  readonly bodyTimeout?: number
}

export interface UpstreamController {
  /** Stops reading the target's socket (the client is slower than the target). */
  pause(): void
  resume(): void
  /** Ends the exchange now: onResponseError(reason) follows, the connection is closed. */
  abort(reason: Error): void
  readonly paused: boolean
  readonly aborted: boolean
}

/**
 * After onRequestStart (called inside dispatch, first, always), exactly one
 * of onResponseEnd and onResponseError. None may throw: a throw is taken as
 * an abort with that error.
 */
export interface UpstreamHandler {
  onRequestStart?(controller: UpstreamController, context: unknown): void
  onResponseStart?(
    controller: UpstreamController,
    statusCode: number,
    headers: FieldValues,
    statusMessage: string,
  ): void
  onResponseData?(controller: UpstreamController, chunk: Buffer): void
  onResponseEnd?(controller: UpstreamController, trailers: FieldValues): void
  onResponseError?(controller: UpstreamController, error: Error): void
}

/** What the proxy needs of a target's connection pool (UpstreamPool is the one). */
export interface Dispatcher {
  dispatch(request: UpstreamRequest, handler: UpstreamHandler): boolean
  /** Lets what is running finish, then closes. */
  close(): Promise<void>
  /** Fails what is running and closes now. */
  destroy(): Promise<void>
}
