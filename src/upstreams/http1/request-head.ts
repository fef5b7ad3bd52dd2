/**
 * The request head as one string, written in one socket write. Everything the
 * caller gives is checked here: most fields come from node:http's parser and
 * are already valid, but rewrites and plugins add their own, and one CR or LF
 * in a value would let it write a second request onto the connection.
 */

import { UpstreamFault } from './faults.ts'
import type { RequestBody, UpstreamRequest } from './handler.ts'

/** RFC 9110 §5.1: field-name = token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** RFC 9110 §5.5: field-vchar, SP and HTAB only (obs-text allowed, as node:http does). */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/
/** RFC 9112 §3.2: a request-target has no whitespace or control characters. */
const INVALID_TARGET = /[^\x21-\x7e\x80-\xff]/

export interface RequestHead {
  readonly text: string
  /** The body's length as announced; -1: sent chunked (RFC 9112 §7.1); 0 with no body. */
  readonly bodyLength: number
  /** The caller's `Connection: close`: the connection ends with this exchange. */
  readonly close: boolean
}

export function requestHead(request: UpstreamRequest, defaultHost: string): RequestHead {
  const { method, path, headers } = request
  const body = request.body ?? null
  if (!TOKEN.test(method)) throw badRequest(`method ${JSON.stringify(method)}`)
  if (path === '' || INVALID_TARGET.test(path)) throw badRequest(`request-target ${JSON.stringify(path)}`)
  let text = `${method} ${path} HTTP/1.1\r\n`
  let host = false
  let close = false
  let declared: string | null = null
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]
    const value = headers[i + 1]
    if (!TOKEN.test(name)) throw badRequest(`field name ${JSON.stringify(name)}`)
    if (INVALID_VALUE.test(value)) throw badRequest(`value of ${name}`)
    // Only names of these lengths need a closer look (host, connection, content-length, transfer-encoding).
    if (name.length === 4 || name.length === 10 || name.length === 14 || name.length === 17) {
      const lower = name.toLowerCase()
      if (lower === 'host') host = true
      else if (lower === 'connection') close ||= /(?:^|,)\s*close\s*(?:,|$)/i.test(value)
      else if (lower === 'content-length') {
        if (declared !== null) throw badRequest('two content-length fields')
        declared = value
      } else if (lower === 'transfer-encoding')
        throw badRequest('transfer-encoding (the client frames the body)')
    }
    text += `${name}: ${value}\r\n`
  }
  if (!host) text += `host: ${defaultHost}\r\n`
  const bodyLength = framing(body, declared)
  if (declared === null) {
    if (bodyLength === -1) text += 'transfer-encoding: chunked\r\n'
    else if (body !== null) text += `content-length: ${bodyLength}\r\n`
  }
  return { text: `${text}\r\n`, bodyLength, close }
}

/** The body's framing: its known length, the declared one for a stream, -1 (chunked) for a stream of unknown length. */
function framing(body: RequestBody, declared: string | null): number {
  const length = declared === null ? -1 : Number(declared)
  if (declared !== null && !(Number.isSafeInteger(length) && length >= 0 && /^\d+$/.test(declared)))
    throw badRequest(`content-length ${JSON.stringify(declared)}`)
  if (body === null) {
    if (length > 0) throw badRequest(`content-length ${declared} with no body`)
    return 0
  }
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    const known = typeof body === 'string' ? Buffer.byteLength(body) : body.length
    if (declared !== null && length !== known)
      throw badRequest(`content-length ${declared} for a body of ${known} bytes`)
    return known
  }
  return length
}

function badRequest(what: string): UpstreamFault {
  return new UpstreamFault('UPSTREAM_BAD_REQUEST', `Cannot send ${what} upstream`)
}
