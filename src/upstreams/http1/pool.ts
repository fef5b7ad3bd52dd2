/**
 * A target's connection pool: at most `connections` sockets, idle ones kept
 * for `keepAliveTimeoutMs`, requests beyond the limit queued in arrival order.
 * The pool decides which connection carries a request; connection.ts carries it.
 */
import { Connection, type ConnectionOwner, type UpstreamTls } from './connection.ts'
import { UpstreamFault } from './faults.ts'
import type {
  Dispatcher,
  FieldValues,
  RequestBody,
  UpstreamController,
  UpstreamHandler,
  UpstreamRequest,
} from './handler.ts'
import { type RequestHead, requestHead } from './request-head.ts'

/** The head of a dispatch refused before it was built (pool closed, bad request): never written. */
const NO_HEAD: RequestHead = { text: '', bodyLength: 0, close: false }

export interface UpstreamPoolOptions {
  /** `http://host:port` or `https://host:port`. */
  readonly origin: string
  /** Default 128 (the config's default); 0: no limit. */
  readonly connections?: number
  /** Default 4 s. */
  readonly keepAliveTimeoutMs?: number
  /** Default 5 s. */
  readonly connectTimeoutMs?: number
  /** For an https origin: SNI, verification, trusted CAs. */
  readonly tls?: UpstreamTls | null
}

export interface PoolStats {
  /** Sockets open or opening. */
  readonly connected: number
  /** Idle sockets waiting for a request. */
  readonly free: number
  /** Requests waiting for a socket. */
  readonly pending: number
  /** Requests on a socket. */
  readonly running: number
}

export class UpstreamPool implements Dispatcher, ConnectionOwner {
  readonly host: string
  readonly port: number
  readonly tls: UpstreamTls | null
  readonly connectTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly #max: number
  /** The Host field for a request that brings none: the origin's host and non-default port. */
  readonly #defaultHost: string
  readonly #connections = new Set<Connection>()
  /** Last in, first out: the most recently used socket is the one least likely closed by the target meanwhile. */
  readonly #idle: Connection[] = []
  readonly #queue: Dispatch[] = []
  #running = 0
  #closing: PromiseWithResolvers<void> | null = null
  #destroyed = false

  constructor(options: UpstreamPoolOptions) {
    const url = new URL(options.origin)
    const secure = url.protocol === 'https:'
    if (!secure && url.protocol !== 'http:') throw new TypeError(`Not an http(s) origin: ${options.origin}`)
    this.host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
    this.port = url.port === '' ? (secure ? 443 : 80) : Number(url.port)
    this.tls = secure ? (options.tls ?? { rejectUnauthorized: true }) : null
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5_000
    this.keepAliveTimeoutMs = options.keepAliveTimeoutMs ?? 4_000
    const max = options.connections ?? 128
    this.#max = max > 0 ? max : Number.POSITIVE_INFINITY
    this.#defaultHost = url.host
  }

  get stats(): PoolStats {
    return {
      connected: this.#connections.size,
      free: this.#idle.length,
      pending: this.#queue.length,
      running: this.#running,
    }
  }

  dispatch(request: UpstreamRequest, handler: UpstreamHandler): boolean {
    let head: RequestHead = NO_HEAD
    let fault: unknown = null
    if (this.#closing !== null || this.#destroyed)
      fault = new UpstreamFault('UPSTREAM_POOL_CLOSED', 'The connection pool is closed')
    else {
      try {
        head = requestHead(request, this.#defaultHost)
      } catch (error) {
        fault = error
      }
    }
    const dispatch = new Dispatch(this, handler, request, head)
    dispatch.start()
    if (dispatch.settled) return true
    if (fault !== null) {
      dispatch.fail(fault as Error)
      return true
    }
    const idle = this.#idle.pop()
    if (idle !== undefined) this.#run(idle, dispatch)
    else if (this.#connections.size < this.#max) this.#run(this.#open(), dispatch)
    else this.#queue.push(dispatch)
    return true
  }

  /** No new requests; those queued and running finish; then every socket closes. */
  close(): Promise<void> {
    this.#closing ??= Promise.withResolvers<void>()
    this.#settleClose()
    return this.#closing.promise
  }

  /** Fails everything queued and running now and closes every socket. */
  destroy(): Promise<void> {
    this.#destroyed = true
    const fault = new UpstreamFault('UPSTREAM_POOL_CLOSED', 'The connection pool was destroyed')
    for (const dispatch of this.#queue.splice(0)) dispatch.fail(fault)
    for (const connection of this.#connections) connection.destroy(fault)
    this.#idle.length = 0
    this.#closing ??= Promise.withResolvers<void>()
    this.#closing.resolve()
    return this.#closing.promise
  }

  released(connection: Connection): void {
    if (this.#destroyed || !this.#connections.has(connection)) {
      connection.close()
      return
    }
    const next = this.#queue.shift()
    if (next !== undefined) {
      this.#run(connection, next)
      return
    }
    if (this.#closing !== null) connection.close()
    else this.#idle.push(connection)
  }

  closed(connection: Connection): void {
    this.#connections.delete(connection)
    const at = this.#idle.indexOf(connection)
    if (at !== -1) this.#idle.splice(at, 1)
    // A slot is free: the first waiting request gets a new connection.
    if (!this.#destroyed && this.#queue.length > 0 && this.#connections.size < this.#max)
      this.#run(this.#open(), this.#queue.shift()!)
    this.#settleClose()
  }

  /** A dispatch is over (ended, failed or aborted). */
  settled(dispatch: Dispatch): void {
    if (dispatch.connection !== null) this.#running--
    else {
      const at = this.#queue.indexOf(dispatch)
      if (at !== -1) this.#queue.splice(at, 1)
    }
    if (this.#closing !== null) queueMicrotask(() => this.#settleClose())
  }

  #open(): Connection {
    const connection = new Connection(this)
    this.#connections.add(connection)
    return connection
  }

  #run(connection: Connection, dispatch: Dispatch): void {
    this.#running++
    connection.run(dispatch)
  }

  #settleClose(): void {
    if (this.#closing === null || this.#running > 0 || this.#queue.length > 0) return
    for (const connection of this.#idle.splice(0)) connection.close()
    this.#closing.resolve()
  }
}

/**
 * One request through the pool, and the controller its handler holds. The
 * handler's callbacks are called from here only, each at most as the
 * contract says (handler.ts); a callback that throws aborts the exchange.
 */
export class Dispatch implements UpstreamController {
  readonly head: RequestHead
  readonly body: RequestBody
  readonly headersTimeout: number
  readonly bodyTimeout: number
  readonly isHead: boolean
  /** The connection carrying it; null while queued. */
  connection: Connection | null = null
  readonly #pool: UpstreamPool
  readonly #handler: UpstreamHandler
  #settled = false
  #paused = false
  #aborted = false

  constructor(pool: UpstreamPool, handler: UpstreamHandler, request: UpstreamRequest, head: RequestHead) {
    this.#pool = pool
    this.#handler = handler
    this.head = head
    this.body = request.body ?? null
    this.headersTimeout = request.headersTimeout ?? 0
    this.bodyTimeout = request.bodyTimeout ?? 0
    this.isHead = request.method === 'HEAD'
  }

  get paused(): boolean {
    return this.#paused
  }

  get aborted(): boolean {
    return this.#aborted
  }

  get settled(): boolean {
    return this.#settled
  }

  pause(): void {
    if (this.#settled || this.#paused) return
    this.#paused = true
    this.connection?.pause()
  }

  resume(): void {
    if (this.#settled || !this.#paused) return
    this.#paused = false
    this.connection?.resume()
  }

  abort(reason: Error): void {
    if (this.#settled) return
    this.#aborted = true
    this.connection?.abandon(this)
    this.fail(reason)
  }

  start(): void {
    try {
      this.#handler.onRequestStart?.(this, null)
    } catch (error) {
      this.abort(error as Error)
    }
  }

  responseStart(status: number, headers: FieldValues, statusMessage: string): void {
    try {
      this.#handler.onResponseStart?.(this, status, headers, statusMessage)
    } catch (error) {
      this.abort(error as Error)
    }
  }

  responseData(chunk: Buffer): void {
    try {
      this.#handler.onResponseData?.(this, chunk)
    } catch (error) {
      this.abort(error as Error)
    }
  }

  responseEnd(trailers: FieldValues): void {
    if (this.#settled) return
    this.#settled = true
    this.#pool.settled(this)
    try {
      this.#handler.onResponseEnd?.(this, trailers)
    } catch {
      // The response is complete; the handler's own failure is its own.
    }
  }

  fail(error: Error): void {
    if (this.#settled) return
    this.#settled = true
    this.#pool.settled(this)
    try {
      this.#handler.onResponseError?.(this, error)
    } catch {
      // Nothing is left to tell: the exchange is over.
    }
  }
}
