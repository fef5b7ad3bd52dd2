/**
 * Header hygiene both ways (RFC 9110 §7.6.1): hop-by-hop fields and every
 * field named in Connection stay on their hop. X-Forwarded-* and Forwarded
 * (RFC 7239) are rebuilt; incoming values are kept only from trusted proxies.
 */
import type { RequestContext } from '../pipeline/context.ts'

/** Fields that describe one connection, never forwarded (RFC 9110 §7.6.1, RFC 9113 §8.2.2). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
])

/**
 * Set by Gatehouse on the way up (Host, X-Forwarded-*, Forwarded); incoming
 * values are believed only from a trusted proxy, and then extended. `expect`
 * is answered here (100-continue), not forwarded.
 */
const REBUILT = new Set([
  'host',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'forwarded',
  'expect',
])

/**
 * Other "what the edge saw" fields that frameworks read (Spring, Express's
 * trust proxy, nginx realip): passed on from trusted proxies, dropped from
 * anyone else so a client cannot claim another address, port or prefix.
 */
const FROM_TRUSTED_ONLY = new Set(['x-real-ip', 'x-forwarded-port', 'x-forwarded-prefix'])

function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null
  // The usual values name no field: answered without a split and a Set per message.
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive') return null
  const text = Array.isArray(value) ? value.join(',') : value
  const tokens = new Set<string>()
  for (const token of text.split(',')) {
    const name = token.trim().toLowerCase()
    if (name !== '' && name !== 'close' && name !== 'keep-alive') tokens.add(name)
  }
  return tokens.size === 0 ? null : tokens
}

/** The request's headers for the target, as a flat [name, value, ...] array (the upstream client's form). */
export function upstreamRequestHeaders(ctx: RequestContext, hostHeader: string): string[] {
  const requestIdHeader = ctx.runtime.config.global.requestIdHeader
  const raw = ctx.req.rawHeaders
  const named = connectionTokens(ctx.req.headers.connection)
  const trusted = ctx.runtime.trustedProxies.has(ctx.peerIp)
  const out: string[] = []
  let xff: string | undefined
  let xfProto: string | undefined
  let xfHost: string | undefined
  let forwarded: string | undefined
  let cookie: string | undefined
  const h2 = ctx.req.httpVersionMajor === 2
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    const lower = name.toLowerCase()
    if (lower.charCodeAt(0) === 58 /* ':' HTTP/2 pseudo-header */) continue
    if (h2 && lower === 'cookie') {
      // RFC 9113 §8.2.3: HTTP/2 may split Cookie into crumbs; HTTP/1.1 gets them as one field.
      cookie = cookie === undefined ? raw[i + 1] : `${cookie}; ${raw[i + 1]}`
      continue
    }
    if (HOP_BY_HOP.has(lower) || lower === requestIdHeader || named?.has(lower)) continue
    if (REBUILT.has(lower)) {
      if (trusted) {
        const value = raw[i + 1]
        if (lower === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`
        else if (lower === 'x-forwarded-proto') xfProto ??= value
        else if (lower === 'x-forwarded-host') xfHost ??= value
        else if (lower === 'forwarded') forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`
      }
      continue
    }
    if (!trusted && FROM_TRUSTED_ONLY.has(lower)) continue
    out.push(name, raw[i + 1])
  }
  if (cookie !== undefined) out.push('cookie', cookie)
  const proto = ctx.secure ? 'https' : 'http'
  const originalHost = ctx.req.headers.host ?? (ctx.req.headers[':authority'] as string | undefined) ?? ''
  const hop = forwardedElement(ctx.peerIp, proto, originalHost)
  out.push(
    'host',
    hostHeader,
    'x-forwarded-for',
    xff === undefined ? ctx.peerIp : `${xff}, ${ctx.peerIp}`,
    'x-forwarded-proto',
    xfProto ?? proto,
    'x-forwarded-host',
    xfHost ?? originalHost,
    'forwarded',
    forwarded === undefined ? hop : `${forwarded}, ${hop}`,
    requestIdHeader,
    ctx.requestId,
  )
  return out
}

/**
 * One Forwarded element (RFC 7239 §4): `for=192.0.2.1;proto=http;host="a:8080"`.
 * An IPv6 node is `"[2001:db8::1]"` (§6); a missing peer is `unknown` (§6.2).
 * host is always a quoted-string, escaped (RFC 9110 §5.6.4), so a Host value
 * cannot add parameters of its own.
 */
export function forwardedElement(peerIp: string, proto: string, host: string): string {
  const node = peerIp === '' ? 'unknown' : peerIp.includes(':') ? `"[${peerIp}]"` : peerIp
  const escaped = host.includes('"') || host.includes('\\') ? host.replace(/["\\]/g, '\\$&') : host
  const quotedHost = host === '' ? '' : `;host="${escaped}"`
  return `for=${node};proto=${proto}${quotedHost}`
}

/**
 * A target's response headers (the upstream client's object, lower-case names) without
 * hop-by-hop, Connection-named and hidden fields. Copied into a new object
 * rather than deleted in place: `delete` turns the object into a slow
 * dictionary that every later read (plugins, writeHead) pays for.
 */
export function cleanResponseHeaders<V>(
  headers: Record<string, V>,
  hidden: readonly string[],
): Record<string, V> {
  const named = connectionTokens(headers.connection as string | string[] | undefined)
  const out: Record<string, V> = {}
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || hidden.includes(name) || named?.has(name) === true) continue
    out[name] = headers[name]
  }
  return out
}
