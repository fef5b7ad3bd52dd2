/**
 * HTTP/2 test helpers: a client that records everything a stream shows
 * (head, 100 Continue, body, trailers, errors, reset code), and an upstream
 * side that tells what reached it (method, url, headers, body size and digest).
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  constants as h2,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2'

const PIECE = 16 * 1024

/** sha256 of `data`, hex: how bodies are compared on both sides. */
export const digest = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

/** What the client saw of one stream, from its first frame to its close. */
export interface H2Outcome {
  /** The final response head ({} when none came). */
  headers: IncomingHttpHeaders
  /** A `100 Continue` arrived (the stream's 'continue' event). */
  continued: boolean
  /** Whether 'continue' came before the final head. */
  continuedBeforeFinal: boolean
  body: Buffer
  trailers: IncomingHttpHeaders | null
  /**
   * 'end' was emitted: END_STREAM arrived, or the stream was reset with
   * NO_ERROR or by this side (Node's client ends the readable then too).
   */
  ended: boolean
  /** Node's 'aborted': the stream closed while our request side was still open. */
  aborted: boolean
  error: NodeJS.ErrnoException | null
  /** The RST_STREAM code (ours or the peer's) once closed; 0 on a clean close. */
  rstCode: number | undefined
}

/**
 * Collects a stream's events until it closes. Once the response has ended, a
 * stream still open is closed (NO_ERROR), as a client does that has its
 * answer (RFC 9113 §8.1); a stream the peer reset keeps the peer's code.
 */
export function collect(stream: ClientHttp2Stream): Promise<H2Outcome> {
  const outcome: H2Outcome = {
    headers: {},
    continued: false,
    continuedBeforeFinal: false,
    body: Buffer.alloc(0),
    trailers: null,
    ended: false,
    aborted: false,
    error: null,
    rstCode: undefined,
  }
  const chunks: Buffer[] = []
  let final = false
  stream.on('continue', () => {
    outcome.continued = true
    outcome.continuedBeforeFinal = !final
  })
  stream.on('response', (headers) => {
    final = true
    outcome.headers = headers
  })
  stream.on('data', (chunk: Buffer) => chunks.push(chunk))
  stream.on('trailers', (trailers) => {
    outcome.trailers = trailers
  })
  stream.on('aborted', () => {
    outcome.aborted = true
  })
  stream.on('error', (error: NodeJS.ErrnoException) => {
    outcome.error = error
  })
  stream.on('end', () => {
    outcome.ended = true
    if (!stream.closed) stream.close(h2.NGHTTP2_NO_ERROR)
  })
  return new Promise((resolve) => {
    stream.on('close', () => {
      outcome.body = Buffer.concat(chunks)
      outcome.rstCode = stream.rstCode
      resolve(outcome)
    })
  })
}

/** A clean answer: the stream ended without an error or an error code. */
export function assertClean(outcome: H2Outcome): void {
  assert.equal(outcome.error, null, 'stream error')
  assert.equal(outcome.aborted, false, 'aborted')
  assert.equal(outcome.ended, true, "'end'")
  assert.equal(outcome.rstCode, h2.NGHTTP2_NO_ERROR, 'reset code')
}

/**
 * One request: `body` is written in 16 KiB pieces (several DATA frames) and
 * the stream ended; write errors after an early answer show in the outcome.
 */
export function h2Request(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: Buffer,
): Promise<H2Outcome> {
  const stream = session.request(headers, { endStream: body === undefined })
  const outcome = collect(stream)
  if (body !== undefined) {
    for (let at = 0; at < body.length; at += PIECE) stream.write(body.subarray(at, at + PIECE))
    stream.end()
  }
  return outcome
}

/** What the upstream's echo answers. */
export interface Seen {
  method: string
  url: string
  headers: Record<string, string | string[] | undefined>
  bytes: number
  sha256: string
}

/** Reads the request body (counted and hashed), then calls `then` with what arrived. */
export function received(req: IncomingMessage, then: (seen: Seen) => void): void {
  const hash = createHash('sha256')
  let bytes = 0
  req.on('data', (chunk: Buffer) => {
    hash.update(chunk)
    bytes += chunk.length
  })
  req.on('end', () =>
    then({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      bytes,
      sha256: hash.digest('hex'),
    }),
  )
}

/** Answers what arrived as JSON. */
export function answerSeen(res: ServerResponse, seen: Seen): void {
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify(seen))
}

/** The upstream's echo in `outcome` (a 200) says `body` arrived whole, sent with `method`. */
export function assertEchoed(outcome: H2Outcome, method: string, body: Buffer): Seen {
  assert.equal(outcome.headers[':status'], 200)
  const seen = JSON.parse(outcome.body.toString()) as Seen
  assert.equal(seen.method, method)
  assert.equal(seen.bytes, body.length)
  assert.equal(seen.sha256, digest(body))
  return seen
}
