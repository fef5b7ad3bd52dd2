/**
 * security-headers: the response headers browsers act on. Runs in
 * transformResponse, so local replies (404, 403, 502...) carry them too.
 * A header the target already sent is kept unless `override` is set.
 */

import type { RequestContext } from '../../pipeline/context.ts'
import { definePlugin } from '../../pipeline/plugin.ts'
import { SecurityHeadersConfig } from './schema.ts'

/** Referrer-Policy tokens (W3C Referrer Policy §3); a comma list lets browsers fall back (§11.1). */
const REFERRER_POLICIES = new Set([
  'no-referrer',
  'no-referrer-when-downgrade',
  'same-origin',
  'origin',
  'strict-origin',
  'origin-when-cross-origin',
  'strict-origin-when-cross-origin',
  'unsafe-url',
])

/** What hstspreload.org requires before it takes a domain; asking for preload without it is a mistake. */
const PRELOAD_MIN_MAX_AGE = 31536000

/** A field value Node will send: visible ASCII, spaces and tabs (RFC 9110 §5.5), not empty. */
const FIELD_VALUE = /^[\t\x20-\x7e]+$/

export default definePlugin<SecurityHeadersConfig>({
  name: 'security-headers',
  schema: SecurityHeadersConfig,
  validate(config) {
    const problems: [(string | number)[], string][] = []
    const referrer = config.referrerPolicy
    if (typeof referrer === 'string') {
      const unknown = referrer
        .split(',')
        .map((token) => token.trim().toLowerCase())
        .filter((token) => !REFERRER_POLICIES.has(token))
      if (unknown.length > 0)
        problems.push([
          ['referrerPolicy'],
          `unknown referrer policy ${unknown.map((t) => JSON.stringify(t)).join(', ')}; expected one or more of ${[...REFERRER_POLICIES].join(', ')}`,
        ])
    }
    const csp = config.contentSecurityPolicy
    if (csp !== undefined && !FIELD_VALUE.test(csp.trim()))
      problems.push([
        ['contentSecurityPolicy'],
        'must be a non-empty header value on one line (no control characters, ASCII only)',
      ])
    const hsts = config.hsts
    if (hsts !== undefined && hsts !== false && hsts.preload) {
      if (hsts.includeSubDomains === false)
        problems.push([['hsts', 'includeSubDomains'], 'preload requires includeSubDomains'])
      if ((hsts.maxAge ?? 15552000) < PRELOAD_MIN_MAX_AGE)
        problems.push([
          ['hsts', 'maxAge'],
          `preload requires a maxAge of at least ${PRELOAD_MIN_MAX_AGE} (1 year)`,
        ])
    }
    return problems
  },
  create(config) {
    const always: [string, string][] = []
    if (config.contentTypeOptions ?? true) always.push(['x-content-type-options', 'nosniff'])
    const frame = config.frameOptions ?? 'DENY'
    if (frame !== false) always.push(['x-frame-options', frame])
    const referrer = config.referrerPolicy ?? 'strict-origin-when-cross-origin'
    if (referrer !== false) always.push(['referrer-policy', referrer])
    if (config.contentSecurityPolicy !== undefined)
      always.push(['content-security-policy', config.contentSecurityPolicy.trim()])
    let hsts: string | null = null
    if (config.hsts !== false) {
      const h = config.hsts ?? {}
      hsts = `max-age=${h.maxAge ?? 15552000}`
      if (h.includeSubDomains ?? true) hsts += '; includeSubDomains'
      if (h.preload ?? false) hsts += '; preload'
    }
    const override = config.override ?? false
    return {
      transformResponse(ctx, head) {
        for (const [name, value] of always)
          if (override || head.headers[name] === undefined) head.headers[name] = value
        if (
          hsts !== null &&
          (override || head.headers['strict-transport-security'] === undefined) &&
          reachedOverHttps(ctx)
        )
          head.headers['strict-transport-security'] = hsts
      },
    }
  },
})

/**
 * RFC 6797 §7.2: HSTS sent over plain HTTP must be ignored by the browser (a
 * man in the middle could forge it), so it is only sent when the client's
 * connection is HTTPS: ours, or that of a trusted proxy in front which says
 * so in X-Forwarded-Proto (the leftmost value is the client's hop).
 */
function reachedOverHttps(ctx: RequestContext): boolean {
  if (ctx.secure) return true
  const proto = ctx.req.headers['x-forwarded-proto']
  if (proto === undefined || !ctx.runtime.trustedProxies.has(ctx.peerIp)) return false
  const first = (Array.isArray(proto) ? proto[0] : proto).split(',')[0]
  return first.trim().toLowerCase() === 'https'
}
