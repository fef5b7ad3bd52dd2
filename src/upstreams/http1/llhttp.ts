/**
 * Node's own llhttp binding, the parser node:http's client and server use
 * (strict by default: the same checks that stop request smuggling on the way
 * in stop response splitting on the way back). Reached through
 * `_http_common`, which Node has exported unchanged since 0.x; undici's
 * WebAssembly build of the same parser copies every read into wasm memory.
 * Like node:http's server, a connection lets the parser consume the socket's
 * stream: reads land in one buffer the parser reuses, and only body bytes
 * are copied out.
 */
type Callback = (...args: never[]) => unknown

export interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void
  /** Bytes parsed, or the parse error (`code`: HPE_*, `reason`, `bytesParsed`). */
  execute(data: Buffer): number | ParseError
  /** End of input: completes a body delimited by the close, or fails a message cut short. */
  finish(): undefined | ParseError
  close(): void
  /** Reads `handle` directly: no JS Buffer and no 'data' event per read; results come to kOnExecute. */
  consume(handle: object): void
  unconsume(): void
  [slot: number]: Callback | undefined
}

export interface ParseError extends Error {
  code: string
  reason: string
  bytesParsed: number
}

interface ParserClass {
  new (): NativeParser
  readonly RESPONSE: number
  readonly kOnMessageBegin: number
  readonly kOnHeaders: number
  readonly kOnHeadersComplete: number
  readonly kOnBody: number
  readonly kOnMessageComplete: number
  readonly kOnExecute: number
}

/** A socket's libuv stream as net.Socket holds it (`_handle`): what consume() and flow control need. */
export interface StreamHandle {
  readonly isStreamBase?: boolean
  /** net.Socket's own record of whether the handle reads; kept in step when reading is stopped here. */
  reading: boolean
  readStart(): number
  readStop(): number
}

export const HTTPParser = (process.getBuiltinModule('_http_common') as { HTTPParser: ParserClass }).HTTPParser
