/**
 * One connection to a target: a socket and a llhttp parser, carrying one
 * request at a time (no pipelining: a slow response must not hold others).
 *
 * The request goes out as one write of its head (plus the body); the
 * response is parsed as it arrives and handed to the dispatch's handler. The
 * connection is given back to its pool only when the response ended cleanly
 * (RFC 9112 §9.3), the whole request body was written, and neither side asked
 * to close; anything else closes it, so no byte of one exchange can be read
 * as part of the next.
 */
import { connect as netConnect, type Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'
import { UpstreamFault } from './faults.ts'
import { bodyChunks, type FieldValues, isReadable, type RequestBody } from './handler.ts'
import { HTTPParser, type NativeParser, type ParseError, type StreamHandle } from './llhttp.ts'
import type { Dispatch } from './pool.ts'

/** What a connection needs of its pool. */
export interface ConnectionOwner {
  readonly host: string
  readonly port: number
  readonly tls: UpstreamTls | null
  readonly connectTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  /** The connection finished a dispatch and can take another. */
  released(connection: Connection): void
  /** The socket closed; the connection is gone. */
  closed(connection: Connection): void
}

export interface UpstreamTls {
  readonly servername?: string
  readonly rejectUnauthorized: boolean
  readonly ca?: string | readonly string[]
}

/** What the connection's timer is counting down. */
const NONE = 0
const CONNECT = 1
const HEADERS = 2
const BODY = 3
const IDLE = 4
type TimerKind = typeof NONE | typeof CONNECT | typeof HEADERS | typeof BODY | typeof IDLE

const CONNECTION = Symbol('connection')
type OwnedParser = NativeParser & { [CONNECTION]: Connection }

/** TCP keep-alive probes after a minute of silence (undici's default too): a target that vanished is noticed. */
const TCP_KEEPALIVE_MS = 60_000

export class Connection {
  readonly socket: Socket
  readonly #owner: ConnectionOwner
  readonly #parser: OwnedParser
  /** The dispatch on this connection; null while connecting or idle. */
  #dispatch: Dispatch | null = null
  #ready = false
  /**
   * One timer per connection for every phase (connect, head, body, idle),
   * counting to `#deadline`. Arming only moves the deadline; the timer fires
   * at its old time and sets itself again for what is left, so a request
   * costs no timer of its own.
   */
  #timer: NodeJS.Timeout | null = null
  #fireAt = 0
  #deadline = 0
  #timerMs = 0
  #timerKind: TimerKind = NONE
  /** This exchange may leave the connection open: llhttp's verdict (version, Connection field) and the body fully written. */
  #keepAlive = true
  #bodyWritten = true
  /** The response ended inside the current parser run; the connection is released after it. */
  #ended = false
  /** Idle lifetime; shortened by the target's `Keep-Alive: timeout` hint. */
  #idleMs: number
  /** Fields flushed by llhttp before the head completed (many fields) or after the body (trailers). */
  #fields: string[] | null = null
  /** The message being parsed is a 1xx interim response (RFC 9110 §15.2): skipped. */
  #interim = false
  #headersDone = false
  /** The socket was paused for the dispatch's handler (backpressure). */
  #paused = false
  /** The socket's stream, once the parser consumes it; null: reads come as 'data' events. */
  #handle: StreamHandle | null = null
  /** The socket error that ended the connection, if any; reported rather than a plain close. */
  #socketError: Error | null = null
  /** A fault found inside a parser callback, reported once the parser returns. */
  #fault: Error | null = null

  constructor(owner: ConnectionOwner) {
    this.#owner = owner
    this.#idleMs = owner.keepAliveTimeoutMs
    const tls = owner.tls
    this.socket =
      tls === null
        ? netConnect({ host: owner.host, port: owner.port, noDelay: true })
        : tlsConnect({
            host: owner.host,
            port: owner.port,
            // RFC 6066 §3: no SNI for an IP literal; undefined lets Node skip it.
            servername: tls.servername,
            rejectUnauthorized: tls.rejectUnauthorized,
            ca: tls.ca as string[] | undefined,
            ALPNProtocols: ['http/1.1'],
          })
    const parser = new HTTPParser() as OwnedParser
    parser.initialize(HTTPParser.RESPONSE, {}, 0, 0)
    parser[CONNECTION] = this
    parser[HTTPParser.kOnMessageBegin] = onMessageBegin
    parser[HTTPParser.kOnHeaders] = onFields
    parser[HTTPParser.kOnHeadersComplete] = onHeadersComplete
    parser[HTTPParser.kOnBody] = onBody
    parser[HTTPParser.kOnMessageComplete] = onMessageComplete
    parser[HTTPParser.kOnExecute] = onExecute
    this.#parser = parser
    const socket = this.socket
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS)
    socket.on(tls === null ? 'connect' : 'secureConnect', () => this.#connected())
    socket.on('data', (chunk: Buffer) => this.#read(chunk))
    socket.on('end', () => this.#endOfInput())
    socket.on('error', (error: Error) => {
      this.#socketError ??= error
    })
    socket.on('close', () => this.#closed())
    this.#arm(owner.connectTimeoutMs, CONNECT)
  }

  /** Sends `dispatch` now if connected, else once the connection is up. */
  run(dispatch: Dispatch): void {
    this.#dispatch = dispatch
    dispatch.connection = this
    if (!this.#ready) return
    this.#send(dispatch)
  }

  pause(): void {
    this.#paused = true
    this.#readStop()
    if (this.#timerKind === BODY) this.#disarm()
  }

  resume(): void {
    const dispatch = this.#dispatch
    if (dispatch !== null && this.#headersDone && this.#timerKind === NONE)
      this.#arm(dispatch.bodyTimeout, BODY)
    this.#paused = false
    this.#readStart()
  }

  /** Ends the dispatch's exchange early (its handler is told by the caller): the connection is not reused. */
  abandon(dispatch: Dispatch): void {
    if (this.#dispatch !== dispatch) return
    this.#dispatch = null
    this.socket.destroy()
  }

  /** Closes an idle connection (pool closing, or idle too long). */
  close(): void {
    this.socket.destroy()
  }

  /** Closes the connection now, failing its dispatch with `error`. */
  destroy(error: Error): void {
    const dispatch = this.#dispatch
    if (dispatch === null) this.socket.destroy()
    else this.#fail(dispatch, error)
  }

  #connected(): void {
    this.#ready = true
    this.#disarm()
    this.#consume()
    const dispatch = this.#dispatch
    if (dispatch !== null) this.#send(dispatch)
    else this.#owner.released(this)
  }

  /**
   * Hands the socket's reads to the parser (as node:http's server does).
   * 'end' and errors still reach the socket. Until then, or where the
   * socket has no stream handle, reads arrive as 'data' events (#read).
   */
  #consume(): void {
    const handle = (this.socket as unknown as { _handle: StreamHandle | null })._handle
    if (handle === null || handle.isStreamBase !== true) return
    this.#parser.consume(handle)
    this.#handle = handle
    if (this.#paused) this.#readStop()
  }

  /**
   * Stops reading for backpressure. A consumed handle is stopped directly:
   * pausing the socket's Readable side would not stop it, nothing is
   * pushed there. net.Socket's `reading` flag is kept in step.
   */
  #readStop(): void {
    const handle = this.#handle
    if (handle === null) this.socket.pause()
    else if (handle.reading) {
      handle.reading = false
      handle.readStop()
    }
  }

  #readStart(): void {
    const handle = this.#handle
    if (handle === null) this.socket.resume()
    else if (!handle.reading && !this.socket.destroyed) {
      handle.reading = true
      handle.readStart()
    }
  }

  #send(dispatch: Dispatch): void {
    const socket = this.socket
    // Busy from here: the idle timer of a reused connection must not fire while a streamed body's first chunk is awaited.
    this.#disarm()
    socket.ref()
    if (dispatch.paused) this.pause()
    this.#keepAlive = !dispatch.head.close
    this.#headersDone = false
    const body = dispatch.body
    if (body === null) {
      this.#bodyWritten = true
      this.#writeHead(dispatch)
    } else if (typeof body === 'string' || Buffer.isBuffer(body)) {
      this.#bodyWritten = true
      socket.cork()
      this.#writeHead(dispatch)
      socket.write(body)
      socket.uncork()
    } else {
      this.#bodyWritten = false
      this.#stream(dispatch, body, dispatch.head.bodyLength).catch((error: unknown) =>
        this.#fail(dispatch, error),
      )
    }
  }

  /**
   * Writes a streamed body, chunked when its length is unknown (RFC 9112
   * §7.1; an empty chunk would end it, so none is written). The head goes
   * out with the first chunk: a body that fails before its first byte (a
   * malformed chunked request, a client gone) never reaches the target. A
   * body that disagrees with its Content-Length fails the exchange rather
   * than leave the target waiting or read the rest as a new request.
   */
  async #stream(dispatch: Dispatch, body: Exclude<RequestBody, null | string | Buffer>, length: number) {
    const socket = this.socket
    const readable = isReadable(body)
    const source = bodyChunks(body)
    let sent = -1
    for (;;) {
      const next = await source.next()
      if (this.#dispatch !== dispatch) return stopReading(body, source, readable)
      if (next.done) break
      const chunk: Buffer = next.value
      if (chunk.length === 0) continue
      socket.cork()
      if (sent === -1) {
        sent = 0
        this.#writeHead(dispatch)
      }
      sent += chunk.length
      if (length >= 0 && sent > length) {
        socket.uncork()
        throw new UpstreamFault(
          'UPSTREAM_BAD_REQUEST',
          `The request body is longer than its content-length ${length}`,
        )
      }
      let flushed: boolean
      if (length >= 0) flushed = socket.write(chunk)
      else {
        socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1')
        socket.write(chunk)
        flushed = socket.write('\r\n', 'latin1')
      }
      socket.uncork()
      // Request bytes moving: the target is reading; the wait for its head restarts.
      if (this.#timerKind === HEADERS) this.#refresh()
      if (!flushed && !(await drained(socket))) return stopReading(body, source, readable)
      if (this.#dispatch !== dispatch) return stopReading(body, source, readable)
    }
    const total = Math.max(sent, 0)
    if (length >= 0 && total !== length)
      throw new UpstreamFault(
        'UPSTREAM_BAD_REQUEST',
        `The request body ended at ${total} of its content-length ${length}`,
      )
    socket.cork()
    if (sent === -1) this.#writeHead(dispatch)
    if (length < 0) socket.write('0\r\n\r\n', 'latin1')
    socket.uncork()
    this.#bodyWritten = true
  }

  /** The head goes out; the wait for the response head starts. */
  #writeHead(dispatch: Dispatch): void {
    this.socket.write(dispatch.head.text, 'latin1')
    this.#arm(dispatch.headersTimeout, HEADERS)
  }

  #read(chunk: Buffer): void {
    this.executed(this.#parser.execute(chunk))
  }

  /** After the parser ran over one read (from #read, or kOnExecute when it consumes the socket). */
  executed(result: number | ParseError): void {
    const dispatch = this.#dispatch
    if (typeof result !== 'number' || this.#fault !== null) {
      const fault = this.#fault ?? badResponse(result as ParseError)
      this.#fault = null
      if (dispatch !== null) this.#fail(dispatch, fault)
      else this.socket.destroy()
      return
    }
    if (this.#ended) {
      this.#ended = false
      this.#release()
    }
  }

  /** The target finished its side: completes a body delimited by the close, or fails one cut short. */
  #endOfInput(): void {
    const dispatch = this.#dispatch
    if (dispatch === null) return
    const result = this.#parser.finish()
    if (result !== undefined || this.#dispatch === dispatch)
      this.#fail(dispatch, new UpstreamFault('UPSTREAM_CLOSED', closedMessage(this.#headersDone)))
    // A body delimited by the close ended here; the socket closes itself (no half-open connections).
    this.#ended = false
  }

  #closed(): void {
    this.#disarm()
    if (this.#timer !== null) clearTimeout(this.#timer)
    const dispatch = this.#dispatch
    if (dispatch !== null) {
      this.#dispatch = null
      const error =
        this.#socketError ?? new UpstreamFault('UPSTREAM_CLOSED', closedMessage(this.#headersDone))
      dispatch.fail(error)
    }
    if (this.#handle !== null) this.#parser.unconsume()
    this.#parser.close()
    this.#owner.closed(this)
  }

  #fail(dispatch: Dispatch, error: unknown): void {
    if (this.#dispatch !== dispatch) return
    this.#dispatch = null
    this.socket.destroy()
    dispatch.fail(error instanceof Error ? error : new Error(String(error)))
  }

  /** The exchange is over on both sides: back to the pool, or closed. */
  #release(): void {
    // The target answered before the whole body was sent: it may still be reading it, so this
    // connection cannot carry another request (the body's source stops being read).
    if (!this.#keepAlive || !this.#bodyWritten || this.socket.destroyed) {
      this.socket.destroy()
      return
    }
    this.#arm(this.#idleMs, IDLE)
    // A response can end while its handler had paused reading: an idle socket reads (to see the target close it).
    if (this.#paused) this.resume()
    this.socket.unref()
    this.#owner.released(this)
  }

  /**
   * A response starts. Bytes after a complete response, or on an idle
   * connection, answer no request: the connection is dropped rather than
   * let them be read as the next request's response (response splitting).
   */
  messageBegin(): void {
    if (this.#dispatch === null)
      this.#fault = new UpstreamFault('UPSTREAM_BAD_RESPONSE', 'The target sent a response nobody asked for')
  }

  headersComplete(
    rawFields: string[] | undefined,
    status: number,
    statusMessage: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    const dispatch = this.#dispatch
    const fields = rawFields ?? this.#fields ?? []
    this.#fields = null
    if (dispatch === null) return -1
    if (status === 101 || upgrade) {
      this.#fault = new UpstreamFault('UPSTREAM_BAD_RESPONSE', 'The target switched protocols unasked (101)')
      return -1
    }
    if (status < 200) {
      // RFC 9110 §15.2: a client must be able to parse interim responses it did not expect; they are skipped.
      this.#interim = true
      return 0
    }
    this.#headersDone = true
    this.#keepAlive &&= keepAlive
    const headers = fieldValues(fields)
    const hint = headers['keep-alive']
    if (hint !== undefined) this.#idleMs = idleFromHint(hint, this.#owner.keepAliveTimeoutMs)
    if (dispatch.paused) this.#disarm()
    else this.#arm(dispatch.bodyTimeout, BODY)
    dispatch.responseStart(status, headers, statusMessage)
    if (this.#dispatch !== dispatch) return -1
    // RFC 9110 §9.3.2: a response to HEAD has no body, whatever its Content-Length says.
    return dispatch.isHead ? 1 : 0
  }

  body(chunk: Buffer): void {
    const dispatch = this.#dispatch
    if (dispatch === null || this.#interim) return
    if (this.#timerKind === BODY) this.#refresh()
    dispatch.responseData(chunk)
  }

  fields(fields: string[]): void {
    if (this.#fields === null) this.#fields = fields
    else this.#fields.push(...fields)
  }

  messageComplete(): void {
    if (this.#interim) {
      this.#interim = false
      this.#fields = null
      return
    }
    const dispatch = this.#dispatch
    if (dispatch === null) return
    const trailers = this.#fields === null ? NO_FIELDS : fieldValues(this.#fields)
    this.#fields = null
    this.#dispatch = null
    this.#disarm()
    this.#ended = true
    dispatch.responseEnd(trailers)
  }

  #arm(ms: number, kind: TimerKind): void {
    if (ms <= 0) {
      this.#timerKind = NONE
      return
    }
    this.#timerKind = kind
    this.#timerMs = ms
    const deadline = performance.now() + ms
    this.#deadline = deadline
    // A timer due later than the new deadline is replaced; one due earlier re-arms itself when it fires.
    if (this.#timer !== null && this.#fireAt <= deadline) return
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#schedule(ms, deadline)
  }

  /** Pushes the deadline back by the phase's length (body bytes arrived, request bytes written). */
  #refresh(): void {
    this.#deadline = performance.now() + this.#timerMs
  }

  #disarm(): void {
    this.#timerKind = NONE
  }

  #schedule(ms: number, fireAt: number): void {
    this.#fireAt = fireAt
    this.#timer = setTimeout(() => this.#tick(), ms)
    this.#timer.unref()
  }

  #tick(): void {
    this.#timer = null
    if (this.#timerKind === NONE || this.socket.destroyed) return
    const left = this.#deadline - performance.now()
    if (left >= 1) this.#schedule(left, this.#deadline)
    else this.#expired()
  }

  #expired(): void {
    const kind = this.#timerKind
    this.#timerKind = NONE
    const dispatch = this.#dispatch
    if (kind === IDLE || dispatch === null) {
      this.socket.destroy()
      return
    }
    const { host, port } = this.#owner
    const fault =
      kind === CONNECT
        ? new UpstreamFault('UPSTREAM_CONNECT_TIMEOUT', `Connecting to ${host}:${port} took too long`)
        : kind === HEADERS
          ? new UpstreamFault('UPSTREAM_HEADERS_TIMEOUT', 'The target sent no response head in time')
          : new UpstreamFault('UPSTREAM_BODY_TIMEOUT', 'The target stopped sending the response body')
    this.#fail(dispatch, fault)
  }
}

const NO_FIELDS: FieldValues = Object.freeze({}) as FieldValues

/** Parser callbacks: `this` is the parser; each hands on to its connection. */
function onHeadersComplete(
  this: OwnedParser,
  _major: number,
  _minor: number,
  fields: string[] | undefined,
  _method: unknown,
  _url: unknown,
  status: number,
  statusMessage: string,
  upgrade: boolean,
  keepAlive: boolean,
): number {
  return this[CONNECTION].headersComplete(fields, status, statusMessage, upgrade, keepAlive)
}

function onExecute(this: OwnedParser, result: number | ParseError): void {
  this[CONNECTION].executed(result)
}

function onMessageBegin(this: OwnedParser): void {
  this[CONNECTION].messageBegin()
}

function onBody(this: OwnedParser, chunk: Buffer): void {
  this[CONNECTION].body(chunk)
}

function onFields(this: OwnedParser, fields: string[]): void {
  this[CONNECTION].fields(fields)
}

function onMessageComplete(this: OwnedParser): void {
  this[CONNECTION].messageComplete()
}

/** Flat [name, value, ...] -> lower-case names, a repeated field as an array of its values in order. */
export function fieldValues(fields: readonly string[]): FieldValues {
  const out: FieldValues = {}
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i].toLowerCase()
    const value = fields[i + 1]
    const seen = out[name]
    if (seen === undefined) out[name] = value
    else if (typeof seen === 'string') out[name] = [seen, value]
    else seen.push(value)
  }
  return out
}

/**
 * `Keep-Alive: timeout=N` (RFC 2068 §19.7.1.1, still sent by nginx and
 * Node): the target closes after N seconds idle, so the connection is
 * dropped a second earlier rather than raced; never above our own setting.
 */
function idleFromHint(hint: string | string[], configuredMs: number): number {
  const match = /timeout=(\d+)/i.exec(typeof hint === 'string' ? hint : hint.join(','))
  if (match === null) return configuredMs
  return Math.min(configuredMs, Math.max(Number(match[1]) * 1000 - 1000, 1000))
}

function badResponse(error: ParseError): UpstreamFault {
  return new UpstreamFault(
    'UPSTREAM_BAD_RESPONSE',
    `The target sent a malformed response (${error.reason ?? error.code})`,
    error.code,
    { cause: error },
  )
}

function closedMessage(headersDone: boolean): string {
  return headersDone
    ? 'The target closed the connection before the end of the response body'
    : 'The target closed the connection before sending a response'
}

/** Resolves true when the socket can take more, false when it closed first. */
function drained(socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      socket.off('drain', onDrain)
      socket.off('close', onClose)
      resolve(ok)
    }
    const onDrain = () => done(true)
    const onClose = () => done(false)
    socket.on('drain', onDrain)
    socket.on('close', onClose)
  })
}

/**
 * The exchange ended before the body did. A Readable (the client's request)
 * is left to its server, which reads and drops the rest as node:http does
 * after a response; any other source is read to its end and dropped.
 */
function stopReading(body: object, source: AsyncIterator<Buffer>, readable: boolean): void {
  if (readable) {
    void source.return?.()
    ;(body as Readable).resume()
    return
  }
  const drain = async () => {
    for (;;) if ((await source.next()).done) return
  }
  drain().catch(() => {})
}
