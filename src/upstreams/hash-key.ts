/**
 * The key a hash balancer hashes for a request, as the service's config
 * names it: the client address (trusted-proxy aware, `ctx.clientIp`), the
 * path, a header, a cookie or a query parameter.
 *
 * A request that lacks the key (no such header, cookie or parameter, or an
 * empty value) is hashed on the client address instead. HAProxy falls back
 * to round robin there and Envoy to a random pick; the client address keeps
 * both of their virtues (keyless requests still spread over the targets)
 * and adds one: a client's keyless requests still land together, so a
 * session that has not got its cookie yet is not scattered. Reading never
 * throws and allocates nothing beyond the value it returns.
 */
import type { HashKeyConfig } from '../config/types.ts'
import type { RequestContext } from '../pipeline/context.ts'

export function hashKeyOf(ctx: RequestContext, key: HashKeyConfig): string {
  let value: string | null
  switch (key.from) {
    case 'ip':
      return ctx.clientIp
    case 'path':
      return ctx.path
    case 'header':
      value = headerValue(ctx.req.headers[key.name])
      break
    case 'cookie':
      value = cookieValue(headerValue(ctx.req.headers.cookie), key.name)
      break
    case 'query':
      value = queryValue(ctx.query, key.name)
      break
  }
  return value === null || value === '' ? ctx.clientIp : value
}

function headerValue(raw: string | string[] | undefined): string | null {
  if (raw === undefined) return null
  return typeof raw === 'string' ? raw : (raw[0] ?? null)
}

/** The value of cookie `name` in a Cookie header (RFC 6265 §5.4: `a=1; b=2`), or null. */
export function cookieValue(header: string | null, name: string): string | null {
  if (header === null) return null
  let start = 0
  const length = header.length
  while (start < length) {
    while (start < length && (header.charCodeAt(start) === 32 || header.charCodeAt(start) === 59)) start++
    let end = header.indexOf(';', start)
    if (end === -1) end = length
    if (header.startsWith(name, start) && header.charCodeAt(start + name.length) === 61 /* = */) {
      let value = header.slice(start + name.length + 1, end).trim()
      // RFC 6265 §4.1.1: a value may be wrapped in double quotes.
      if (value.length >= 2 && value.charCodeAt(0) === 34 && value.charCodeAt(value.length - 1) === 34)
        value = value.slice(1, -1)
      return value
    }
    start = end + 1
  }
  return null
}

/**
 * The value of parameter `name` in a raw query string (no `?`), the first
 * one when repeated, percent-decoded (and `+` as space, as forms send it) so
 * `a%20b` and `a+b` are one key; a malformed escape is used as sent. null
 * when absent; '' when present without a value.
 */
export function queryValue(query: string, name: string): string | null {
  if (query === '') return null
  let start = 0
  const length = query.length
  while (start <= length) {
    let end = query.indexOf('&', start)
    if (end === -1) end = length
    if (query.startsWith(name, start)) {
      const after = start + name.length
      if (after === end) return ''
      if (query.charCodeAt(after) === 61 /* = */) return decode(query.slice(after + 1, end))
    }
    start = end + 1
  }
  return null
}

function decode(raw: string): string | null {
  if (raw.indexOf('%') === -1 && raw.indexOf('+') === -1) return raw
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '))
  } catch {
    return raw
  }
}
