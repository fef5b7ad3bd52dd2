/**
 * security-headers: the response headers browsers act on. Runs in
 * transformResponse, so local replies (404, 403, 502...) carry them too.
 */
import { definePlugin } from '../../pipeline/plugin.ts'
import { SecurityHeadersConfig } from './schema.ts'

export default definePlugin<SecurityHeadersConfig>({
  name: 'security-headers',
  schema: SecurityHeadersConfig,
  create(config) {
    const always: [string, string][] = []
    if (config.contentTypeOptions ?? true) always.push(['x-content-type-options', 'nosniff'])
    const frame = config.frameOptions ?? 'DENY'
    if (frame !== false) always.push(['x-frame-options', frame])
    const referrer = config.referrerPolicy ?? 'strict-origin-when-cross-origin'
    if (referrer !== false) always.push(['referrer-policy', referrer])
    if (config.contentSecurityPolicy !== undefined)
      always.push(['content-security-policy', config.contentSecurityPolicy])
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
        // RFC 6797 §7.2: an HSTS header received over plain HTTP must be ignored, so don't send one.
        if (
          hsts !== null &&
          ctx.secure &&
          (override || head.headers['strict-transport-security'] === undefined)
        )
          head.headers['strict-transport-security'] = hsts
      },
    }
  },
})
