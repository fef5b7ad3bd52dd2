/**
 * An HTTP/2 request and its response on http2's core stream API, shaped like
 * the parts of node:http's IncomingMessage and ServerResponse that the
 * pipeline uses, so one pipeline serves both protocols.
 *
 * Why not Node's compatibility layer (Http2ServerRequest/Response): it wraps
 * each stream in a second Readable that re-pushes the body, a Stream for the
 * response, eleven listeners on the stream, a header object copied field by field, and
 * it always asks for trailers (one more frame and a setImmediate per
 * response). Gatehouse on this adapter serves 1.25x / 1.33x the requests per
 * second of Gatehouse on the compatibility layer (docs/performance.md,
 * fourth session). Here the request is a plain
 * object over the stream (the stream itself carries the body), and the
 * response writes one flat field list with `stream.respond`.
 */
import { EventEmitter } from 'node:events'
import {
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  validateHeaderName,
  validateHeaderValue,
} from 'node:http'
import {
  type Http2Session,
  constants as http2Constants,
  type ServerHttp2Stream,
  sensitiveHeaders,
} from 'node:http2'

/** The client's address, read once per session (a session's socket is a Proxy in Node). */
export interface Http2Peer {
  readonly remoteAddress: string | undefined
}

export class Http2Request {
  readonly stream: ServerHttp2Stream
  /** The fields as Node decoded them, pseudo-headers (`:path`, `:authority`...) included; crumbs of `cookie` joined. */
  readonly headers: IncomingHttpHeaders
  /** Flat [name, value, ...] as received, pseudo-headers included. */
  readonly rawHeaders: string[]
  readonly method: string
  /**
   * `:path`; '' when there is none (CONNECT, RFC 9113 §8.5), which the
   * pipeline refuses as not origin-form rather than routing it as `/`.
   */
  readonly url: string
  readonly socket: Http2Peer

  constructor(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    rawHeaders: string[],
    peer: Http2Peer,
  ) {
    this.stream = stream
    this.headers = headers
    this.rawHeaders = rawHeaders
    this.method = (headers[':method'] as string | undefined) ?? 'GET'
    this.url = (headers[':path'] as string | undefined) ?? ''
    this.socket = peer
  }

  get httpVersionMajor(): 2 {
    return 2
  }

  get httpVersionMinor(): 0 {
    return 0
  }

  /** The whole request has arrived (END_STREAM read), or the stream is gone. */
  get complete(): boolean {
    const stream = this.stream
    return stream.readableEnded || stream.closed || stream.destroyed
  }
}

const RESPONSE = Symbol('gatehouse.http2Response')
type StreamWithResponse = ServerHttp2Stream & { [RESPONSE]: Http2Response }

/**
 * Fields that mean something only on an HTTP/1.1 connection: an HTTP/2
 * message must not carry them (RFC 9113 §8.2.2), and Node throws on them.
 * Dropped, as Node's compatibility layer drops `connection`; hop-by-hop
 * fields from a target are removed before this (proxy/headers.ts).
 */
const CONNECTION_SPECIFIC = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
])

/**
 * Emits 'close' when the stream closes (the response is over, sent or cut)
 * and 'drain' when the stream can take more; the pipeline listens to these
 * two only.
 */
export class Http2Response extends EventEmitter {
  readonly stream: ServerHttp2Stream
  statusCode = 200
  /** A response to HEAD: Node ends the stream with its head, and no trailers can follow. */
  readonly #head: boolean
  readonly #neverIndexed: readonly string[]
  #trailers: OutgoingHttpHeaders | null = null
  /** Kept for closed(): the stream lets go of its session when it closes. */
  readonly #session: Http2Session
  #sentWhole: boolean | null = null

  /** `neverIndexed`: fields HPACK must send as never-indexed literals (RFC 7541 §7.1.3). */
  constructor(stream: ServerHttp2Stream, head: boolean, neverIndexed: readonly string[]) {
    super()
    this.stream = stream
    this.#head = head
    this.#neverIndexed = neverIndexed
    this.#session = stream.session!
    ;(stream as StreamWithResponse)[RESPONSE] = this
    stream.once('close', onStreamClose)
    stream.on('drain', onStreamDrain)
    stream.on('error', ignoreStreamError)
  }

  get headersSent(): boolean {
    return this.stream.headersSent
  }

  /** The stream is gone (reset by either side, or over): nothing more can be sent. */
  get destroyed(): boolean {
    const stream = this.stream
    return stream.destroyed || stream.closed
  }

  get writableEnded(): boolean {
    return this.stream.writableEnded
  }

  /**
   * The whole response went out. Until the stream closes, Node's
   * writableFinished; at the close, settled once (closed() below).
   */
  get writableFinished(): boolean {
    return this.#sentWhole ?? this.stream.writableFinished
  }

  /**
   * The stream closed. Node closes a stream whose two sides are done (the
   * request read to its end, our END_STREAM sent) before its 'finish', so
   * writableFinished alone would call most answers to a POST cut short: a
   * stream ended by us, closed with no reset code while its session lives
   * (nghttp2 closed it after sending the last frame), was sent whole. A
   * session torn down also closes its streams with code 0, hence the session.
   */
  closed(): void {
    const stream = this.stream
    // `aborted`: closed (reset by the client, or its session gone) while we were
    // still writing; Node then ends the writable side itself, 'finish' included.
    this.#sentWhole =
      !stream.aborted &&
      (stream.writableFinished ||
        (stream.writableEnded &&
          stream.rstCode === http2Constants.NGHTTP2_NO_ERROR &&
          !this.#session.destroyed))
    this.emit('close')
  }

  /**
   * Sends the response head. Throws, before anything is sent, on a field
   * node:http would refuse too (not a token, CR/LF/NUL in a value) or a status
   * HTTP/2 cannot carry (1xx, outside 200-599), so the caller can answer
   * differently. Names are lower-cased (RFC 9113 §8.2.1).
   */
  writeHead(status: number, headers: OutgoingHttpHeaders): this {
    const stream = this.stream
    if (stream.destroyed || stream.closed) return this
    const fields = appendFields([':status', String(status)], headers) as FieldList
    fields[sensitiveHeaders] = this.#neverIndexed
    // Trailers can follow only a body of unknown length (Content-Length
    // forbids them on the HTTP/1.1 side): asking for them otherwise costs a
    // frame and a tick per response.
    const trailers = headers['content-length'] === undefined && !this.#head
    stream.respond(fields, trailers ? WAIT_FOR_TRAILERS : undefined)
    if (trailers) stream.once('wantTrailers', onWantTrailers)
    this.statusCode = status
    return this
  }

  /**
   * Writes body bytes; false when the stream's buffer is full ('drain'
   * follows). Bytes for a response that may have no body (HEAD, 204, 304:
   * Node ended the stream with its head) are dropped, as node:http does.
   */
  write(chunk: Buffer | string): boolean {
    const stream = this.stream
    if (stream.writableEnded || stream.destroyed) return true
    return stream.write(chunk)
  }

  end(chunk?: Buffer | string, encoding?: BufferEncoding): this {
    const stream = this.stream
    if (!stream.headersSent) this.writeHead(this.statusCode, {})
    if (stream.writableEnded || stream.destroyed) return this
    if (chunk === undefined) stream.end()
    else if (encoding === undefined) stream.end(chunk)
    else stream.end(chunk, encoding)
    if (!stream.endAfterHeaders && !stream.readableEnded) stream.once('finish', closeUnfinishedRequest)
    return this
  }

  /**
   * Cuts the response: RST_STREAM with INTERNAL_ERROR, so the client sees it
   * incomplete (a body of unknown length has no other sign; NO_ERROR is for
   * complete responses, RFC 9113 §8.1). Queued DATA goes out first.
   */
  destroy(): void {
    const stream = this.stream
    if (!stream.closed && !stream.destroyed) stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR)
  }

  /** Fields sent in a HEADERS frame after the body (RFC 9113 §8.1); only a body of unknown length has them. */
  addTrailers(fields: OutgoingHttpHeaders): void {
    const list = appendFields([], fields)
    const trailers: Record<string, string | string[]> = {}
    for (let i = 0; i < list.length; i += 2) {
      const seen = trailers[list[i]]
      if (seen === undefined) trailers[list[i]] = list[i + 1]
      else if (Array.isArray(seen)) seen.push(list[i + 1])
      else trailers[list[i]] = [seen, list[i + 1]]
    }
    this.#trailers = trailers
  }

  /** RFC 9110 §15.2.1: an interim 100 tells the client to send the body it held back. */
  writeContinue(): void {
    const stream = this.stream
    if (!stream.headersSent && !stream.closed && !stream.destroyed)
      stream.additionalHeaders({ ':status': 100 })
  }

  /** The trailers to send now; an empty set ends the stream with an empty DATA frame. */
  takeTrailers(): OutgoingHttpHeaders {
    return this.#trailers ?? {}
  }
}

const WAIT_FOR_TRAILERS = { waitForTrailers: true }

type FieldList = string[] & { [sensitiveHeaders]?: readonly string[] }

/**
 * Appends `headers` to a flat [name, value, ...] list as HTTP/2 sends them:
 * lower-case names (RFC 9113 §8.2.1), connection-specific fields left out,
 * each value on its own. Throws on a name or value node:http would refuse
 * (not a token; CR, LF or NUL in a value), before anything is sent.
 */
function appendFields(list: string[], headers: OutgoingHttpHeaders): string[] {
  for (const key in headers) {
    const value = headers[key]
    if (value === undefined) continue
    const name = key.toLowerCase()
    if (CONNECTION_SPECIFIC.has(name)) continue
    validateHeaderName(name)
    if (Array.isArray(value))
      for (const item of value) {
        validateHeaderValue(name, item)
        list.push(name, item)
      }
    else {
      const text = typeof value === 'string' ? value : String(value)
      validateHeaderValue(name, text)
      list.push(name, text)
    }
  }
  return list
}

function onStreamClose(this: StreamWithResponse): void {
  this[RESPONSE].closed()
}

/**
 * A stream reset with an error code (by the client, or by destroy() above)
 * is destroyed with an error: without a listener it would be thrown, and one
 * client could take the process down. 'close' follows and ends the request.
 */
function ignoreStreamError(): void {}

function onStreamDrain(this: StreamWithResponse): void {
  this[RESPONSE].emit('drain')
}

/**
 * The response is complete and the request body is not: RST_STREAM with
 * NO_ERROR asks the client to stop sending it (RFC 9113 §8.1), as an HTTP/1.1
 * server would close the connection. Without it the stream would wait for a
 * body nobody reads. Node sends the queued DATA before the RST_STREAM.
 */
function closeUnfinishedRequest(this: ServerHttp2Stream): void {
  if (!this.readableEnded && !this.closed) this.close(http2Constants.NGHTTP2_NO_ERROR)
}

function onWantTrailers(this: StreamWithResponse): void {
  this.sendTrailers(this[RESPONSE].takeTrailers())
}
