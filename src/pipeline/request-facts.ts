/** Pure helpers that turn a raw request into the facts routing and logging use. */
import { randomUUID } from 'node:crypto'
import type { IpMatcher } from '../net/ip.ts'
import { unmapIpv4 } from '../net/ip.ts'

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:@=+/-]{1,200}$/

/** An incoming id is kept when it is short and plain; anything else is replaced (log injection). */
export function requestIdFrom(value: string | string[] | undefined): string {
  return typeof value === 'string' && SAFE_REQUEST_ID.test(value) ? value : randomUUID()
}

/** `Host: Example.com:8080` -> `example.com`; `[::1]:8080` -> `[::1]`. */
export function hostOnly(host: string | undefined): string {
  if (!host) return ''
  const end = host.startsWith('[') ? host.indexOf(']') + 1 : host.indexOf(':')
  return (end > 0 ? host.slice(0, end) : host).toLowerCase()
}

/**
 * Removes dot-segments (RFC 3986 §5.2.4), `%2e` included, so `/public/../admin`
 * is routed, checked and forwarded as `/admin`. Paths without them are returned as is.
 */
export function normalizePath(path: string): string {
  if (!path.includes('/.') && !/%2e/i.test(path)) return path
  const decoded = path.replace(/%2e/gi, '.')
  const out: string[] = []
  const segments = decoded.split('/')
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]
    if (segment === '.') {
      if (i === segments.length - 1) out.push('')
    } else if (segment === '..') {
      out.pop()
      if (i === segments.length - 1) out.push('')
    } else out.push(segment)
  }
  return `/${out.join('/')}`
}

/**
 * The client address: the TCP peer, unless the peer is a trusted proxy; then
 * X-Forwarded-For is read right to left, skipping trusted proxies, and the
 * first untrusted address is the client.
 */
export function clientIpFrom(peer: string, xff: string | string[] | undefined, trusted: IpMatcher): string {
  if (trusted.empty || xff === undefined || !trusted.has(peer)) return peer
  const hops = (Array.isArray(xff) ? xff.join(',') : xff).split(',')
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = unmapIpv4(hops[i].trim())
    if (hop === '') continue
    if (!trusted.has(hop)) return hop
  }
  return unmapIpv4(hops[0]?.trim() ?? peer) || peer
}
