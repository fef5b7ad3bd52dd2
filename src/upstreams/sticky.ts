/**
 * Sticky sessions: keep a client on the target it got. `find` names the
 * pinned target of a request (the service takes it only while it is
 * selectable and not already tried, else the balancer picks); `pin` runs on
 * the response head from the target that answered, so a client whose target
 * went down is re-pinned to the one that served it instead.
 *
 * - by cookie: Gatehouse sets an opaque cookie naming the target (HAProxy
 *   `cookie ... insert`); nothing is kept in memory per client.
 * - by client address: a bounded table client ip -> target, per service,
 *   forgotten `ttl` after the client's last response; carried over by a reload.
 */
import { createHash, createHmac } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { ServiceConfig, StickyConfig } from '../config/types.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { ResponseHead } from '../pipeline/plugin.ts'
import type { ServiceParts } from './service.ts'
import type { Target } from './target.ts'

export type Sticky = NonNullable<ServiceParts['sticky']>

/** A clock in milliseconds (performance.now() unless a test injects one). */
export interface Clock {
  now(): number
}

/**
 * The sticky part of a service, or null. `previous` is the same service's
 * sticky part in the snapshot being replaced: an address table is taken over
 * from it, so a reload does not move every client.
 */
export function createSticky(
  service: ServiceConfig,
  targets: readonly Target[],
  previous: ServiceParts['sticky'] = null,
  clock: Clock = performance,
): Sticky | null {
  const config = service.sticky
  if (config === null) return null
  if (config.by === 'cookie') return new CookieSticky(service.name, config, targets)
  return new AddressSticky(config, targets, previous instanceof AddressSticky ? previous.table : null, clock)
}

type CookieConfig = Extract<StickyConfig, { by: 'cookie' }>
type AddressConfig = Extract<StickyConfig, { by: 'ip' }>

/** RFC 6265 §4.1.1: a cookie-name is an RFC 2616 token. */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

class CookieSticky implements Sticky {
  readonly #name: string
  /** Cookie value -> target; a value not in here (stale, tampered, another service's) is ignored. */
  readonly #targetOf = new Map<string, Target>()
  /** Target -> its cookie value. */
  readonly #valueOf = new Map<Target, string>()
  /** `; Path=/; HttpOnly; SameSite=Lax` and Max-Age, the same for every target. */
  readonly #attributes: string
  readonly #secure: boolean | null

  constructor(serviceName: string, config: CookieConfig, targets: readonly Target[]) {
    if (!COOKIE_NAME.test(config.name))
      throw new Error(`sticky cookie name ${JSON.stringify(config.name)} is not a token (RFC 6265 §4.1.1)`)
    this.#name = config.name
    this.#secure = config.secure
    for (const target of targets) {
      const value = stickyCookieValue(serviceName, config.name, target.origin)
      if (!this.#targetOf.has(value)) this.#targetOf.set(value, target)
      this.#valueOf.set(target, value)
    }
    // Max-Age in whole seconds (RFC 6265 §5.2.2); 0 would delete the cookie, so
    // a lifetime under a second rounds up to one.
    const maxAge =
      config.maxAgeMs === null ? '' : `; Max-Age=${Math.max(1, Math.ceil(config.maxAgeMs / 1000))}`
    // SameSite=Lax: sent on top-level navigations from other sites (a link to
    // the app keeps its target) but not on their sub-requests.
    this.#attributes = `; Path=/; HttpOnly; SameSite=Lax${maxAge}`
  }

  find(ctx: RequestContext): Target | null {
    const value = readCookie(ctx.req.headers.cookie, this.#name)
    return value === null ? null : (this.#targetOf.get(value) ?? null)
  }

  pin(ctx: RequestContext, target: Target, head: ResponseHead): void {
    const value = this.#valueOf.get(target)
    // The client already holds this target's cookie: nothing to send.
    if (value === undefined || readCookie(ctx.req.headers.cookie, this.#name) === value) return
    const secure = (this.#secure ?? ctx.secure) ? '; Secure' : ''
    appendSetCookie(head, `${this.#name}=${value}${this.#attributes}${secure}`)
  }
}

/**
 * The cookie value naming `origin` in a service: HMAC-SHA256 truncated to 128
 * bits, base64url (22 characters, all allowed in a cookie-value).
 *
 * Why a keyed hash rather than an index or the address: the value must not
 * show the target's address (topology hiding), must stay the same across
 * reloads and across Gatehouse instances that run the same config (a client
 * behind an L4 balancer may reach any of them), and must not change when
 * another target is added or removed (an index would). The key is derived
 * from the config (the cookie name) rather than random per process for the
 * same reason; it is therefore not a secret: the value hides the address
 * from anyone reading the cookie, but someone who knows the config scheme
 * and guesses an address could confirm the guess. A value that names no
 * target of the service is simply ignored, so forging one gains nothing
 * beyond choosing among the service's own targets, which any client can do
 * by retrying until it lands where it wants.
 */
export function stickyCookieValue(serviceName: string, cookieName: string, origin: string): string {
  const key = createHash('sha256').update(`gatehouse sticky cookie v1\0${cookieName}`).digest()
  return createHmac('sha256', key)
    .update(`${serviceName}\0${origin}`)
    .digest()
    .subarray(0, 16)
    .toString('base64url')
}

/**
 * The value of cookie `name` in a Cookie header (RFC 6265 §5.4: `a=1; b=2`),
 * or null. Scans for the one name instead of parsing every pair; names are
 * case-sensitive; a value in double quotes loses them (§4.1.1). When the name
 * occurs twice (cookies from two paths), the first wins, as browsers send the
 * more specific path first (§5.4 step 2). Several header lines (HTTP/2 may
 * split cookies, RFC 9113 §8.2.3) are read as one.
 */
export function readCookie(header: string | string[] | undefined, name: string): string | null {
  if (header === undefined) return null
  const text = typeof header === 'string' ? header : header.join('; ')
  let from = 0
  for (;;) {
    const at = text.indexOf(name, from)
    if (at === -1) return null
    from = at + name.length
    if (text.charCodeAt(from) !== 0x3d /* = */ || !startsPair(text, at)) continue
    let end = text.indexOf(';', from)
    if (end === -1) end = text.length
    const value = text.slice(from + 1, end).trim()
    return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value
  }
}

/** True when `at` begins a cookie-pair: the header's start, or after `;` and optional whitespace. */
function startsPair(text: string, at: number): boolean {
  let i = at - 1
  while (i >= 0 && (text[i] === ' ' || text[i] === '\t')) i--
  return i < 0 || text[i] === ';'
}

/** Adds one Set-Cookie field beside the target's own (never folded into one line: RFC 6265 §3). */
function appendSetCookie(head: ResponseHead, cookie: string): void {
  const existing = head.headers['set-cookie']
  if (existing === undefined) head.headers['set-cookie'] = [cookie]
  else if (Array.isArray(existing)) head.headers['set-cookie'] = [...existing, cookie]
  else head.headers['set-cookie'] = [String(existing), cookie]
}

/**
 * At most this many client addresses per service; the least recently seen is
 * forgotten first. lru-cache preallocates its index for this many entries
 * (about 4 MB), once per service: the table is carried over by reloads.
 */
export const ADDRESS_TABLE_SIZE = 100_000

/** Client ip -> origin of its target. Origins, not Target objects, so the table outlives a reload. */
export type AddressTable = LRUCache<string, string>

class AddressSticky implements Sticky {
  readonly table: AddressTable
  readonly #ttlMs: number
  /** Origin -> this snapshot's target; a pinned origin that left the service is ignored. */
  readonly #targetOf = new Map<string, Target>()

  constructor(config: AddressConfig, targets: readonly Target[], table: AddressTable | null, clock: Clock) {
    // lru-cache wants whole milliseconds; a ttl of 0 pins nobody (to lru-cache it would mean forever).
    this.#ttlMs = Math.ceil(config.ttlMs)
    for (const target of targets)
      if (!this.#targetOf.has(target.origin)) this.#targetOf.set(target.origin, target)
    this.table =
      table ??
      new LRUCache<string, string>({
        max: ADDRESS_TABLE_SIZE,
        ttl: this.#ttlMs,
        perf: clock,
        // Read the clock on every check instead of caching it for a millisecond
        // behind a timer: performance.now() is cheap, and an injected clock is exact.
        ttlResolution: 0,
      })
  }

  find(ctx: RequestContext): Target | null {
    if (ctx.clientIp === '') return null
    const origin = this.table.get(ctx.clientIp)
    return origin === undefined ? null : (this.#targetOf.get(origin) ?? null)
  }

  /** Every response restarts the ttl: it counts from the client's last request. */
  pin(ctx: RequestContext, target: Target): void {
    if (ctx.clientIp === '' || this.#ttlMs === 0) return
    this.table.set(ctx.clientIp, target.origin, { ttl: this.#ttlMs })
  }
}
