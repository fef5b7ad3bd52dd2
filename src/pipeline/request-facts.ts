/** Pure helpers that turn a raw request into the facts routing and logging use. */
import { randomUUID } from 'node:crypto'
import { isIP } from 'node:net'
import type { IpMatcher } from '../net/ip.ts'
import { unmapIpv4 } from '../net/ip.ts'

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:@=+/-]{1,200}$/

/**
 * An incoming id is kept when it is short and plain; anything else (too
 * long, other characters, the field repeated) is replaced by a UUID, so a
 * client cannot inject into logs or the upstream's headers.
 */
export function requestIdFrom(value: string | string[] | undefined): string {
  return typeof value === 'string' && SAFE_REQUEST_ID.test(value) ? value : randomUUID()
}

/** `Host: Example.com:8080` -> `example.com`; `[::1]:8080` -> `[::1]`; `example.com.` -> `example.com`. */
export function hostOnly(host: string | undefined): string {
  if (!host) return ''
  const end = host.startsWith('[') ? host.indexOf(']') + 1 : host.indexOf(':')
  const name = (end > 0 ? host.slice(0, end) : host).toLowerCase()
  // A fully qualified name's final dot names the same host (RFC 1034 §3.1).
  return name.length > 1 && name.endsWith('.') ? name.slice(0, -1) : name
}

const UNRESERVED = /[A-Za-z0-9\-._~]/
const NEEDS_NORMALIZING = /%|\/\/|\/\./

/**
 * The path that is routed, checked by plugins and forwarded, so all three
 * see the same thing (a path the upstream would read differently from the
 * gateway is how access rules get bypassed):
 *   1. percent-encoded unreserved characters are decoded and other escapes
 *      get upper-case hex (RFC 3986 §6.2.2.1-2): `/%61dmin` -> `/admin`.
 *      Reserved ones stay encoded: `%2F` is not a segment separator;
 *   2. runs of `/` become one (nginx's merge_slashes, on by default there);
 *   3. dot-segments are removed (RFC 3986 §5.2.4), `%2e` included:
 *      `/public/../admin` -> `/admin`.
 * Paths without `%`, `//` or `/.` are returned as they are.
 */
export function normalizePath(path: string): string {
  if (!NEEDS_NORMALIZING.test(path)) return path
  let text = path.includes('%') ? normalizeEscapes(path) : path
  if (text.includes('//')) text = text.replace(/\/{2,}/g, '/')
  return text.includes('/.') ? removeDotSegments(text) : text
}

function normalizeEscapes(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (encoded, hex: string) => {
    const char = String.fromCharCode(Number.parseInt(hex, 16))
    return UNRESERVED.test(char) ? char : encoded.toUpperCase()
  })
}

function removeDotSegments(path: string): string {
  const segments = path.split('/')
  const out: string[] = []
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]
    const last = i === segments.length - 1
    if (segment === '.' || segment === '..') {
      if (segment === '..') out.pop()
      // `/a/b/..` is `/a/`: a dot-segment at the end leaves a trailing slash.
      if (last) out.push('')
    } else out.push(segment)
  }
  return `/${out.join('/')}`
}

/**
 * The client address: the TCP peer, unless the peer is a trusted proxy; then
 * X-Forwarded-For is read right to left (each proxy appends the address it
 * saw), skipping trusted proxies, and the first untrusted address is the
 * client. An entry that is not an address ends the walk: what lies left of
 * it was not written by a proxy we trust, so the last trusted hop is used.
 */
export function clientIpFrom(peer: string, xff: string | string[] | undefined, trusted: IpMatcher): string {
  if (trusted.empty || xff === undefined || !trusted.has(peer)) return peer
  const hops = (Array.isArray(xff) ? xff.join(',') : xff).split(',')
  let nearest = peer
  for (let i = hops.length - 1; i >= 0; i--) {
    const text = hops[i].trim()
    if (text === '') continue
    const hop = forwardedAddress(text)
    if (hop === null) return nearest
    if (!trusted.has(hop)) return hop
    nearest = hop
  }
  return nearest
}

/** `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]`, `[::1]:5678` -> the address; anything else -> null. */
function forwardedAddress(text: string): string | null {
  let address = text
  if (address.startsWith('[')) {
    const end = address.indexOf(']')
    address = end === -1 ? '' : address.slice(1, end)
  } else if (address.indexOf(':') !== -1 && address.indexOf(':') === address.lastIndexOf(':')) {
    address = address.slice(0, address.indexOf(':'))
  }
  address = unmapIpv4(address)
  return isIP(address) === 0 ? null : address
}

/**
 * Splits a request target into path, query and, for the absolute form
 * (`GET http://api.example.com/users HTTP/1.1`), its authority. RFC 9112
 * §3.2.2: a server must accept the absolute form, and its authority then
 * replaces the Host header. Anything else that is not origin-form is left for
 * accept() to refuse (asterisk-form, authority-form).
 */
export function splitTarget(url: string): { path: string; query: string; authority: string | null } {
  let authority: string | null = null
  let rest = url
  if (url.charCodeAt(0) !== 47 /* '/' */) {
    const scheme = /^https?:\/\//i.exec(url)
    if (scheme !== null) {
      const start = scheme[0].length
      let end = start
      while (end < url.length && url[end] !== '/' && url[end] !== '?' && url[end] !== '#') end++
      authority = url.slice(start, end)
      rest = url.slice(end)
      if (rest === '' || rest[0] === '?') rest = `/${rest}`
      // userinfo in a request target is not allowed (RFC 9110 §4.2.4); refused as not origin-form.
      if (authority === '' || authority.includes('@')) return { path: url, query: '', authority: null }
    }
  }
  const queryAt = rest.indexOf('?')
  return queryAt === -1
    ? { path: rest, query: '', authority }
    : { path: rest.slice(0, queryAt), query: rest.slice(queryAt + 1), authority }
}
