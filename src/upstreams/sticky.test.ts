import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { ServiceConfig, StickyConfig } from '../config/types.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { ResponseHead } from '../pipeline/plugin.ts'
import { UpstreamPool } from './http1/pool.ts'
import { ADDRESS_TABLE_SIZE, createSticky, readCookie, type Sticky, stickyCookieValue } from './sticky.ts'
import { Target } from './target.ts'

const made: Target[] = []
/** Targets on the given origins; their pools never connect. */
function targets(...origins: string[]): Target[] {
  const list = origins.map(
    (origin) =>
      new Target(
        { url: origin, origin, weight: 1, backup: false, drain: false },
        new UpstreamPool({ origin }),
        origin,
      ),
  )
  made.push(...list)
  return list
}
after(async () => {
  await Promise.all(made.map((target) => target.pool.close()))
})

/** Sticky reads only these of a service's config and a request's context. */
const service = (name: string, sticky: StickyConfig) => ({ name, sticky }) as unknown as ServiceConfig
const request = (facts: { cookie?: string; secure?: boolean; clientIp?: string }) =>
  ({
    req: { headers: facts.cookie === undefined ? {} : { cookie: facts.cookie } },
    secure: facts.secure ?? false,
    clientIp: facts.clientIp ?? '192.0.2.1',
  }) as unknown as RequestContext
const head = (headers: ResponseHead['headers'] = {}): ResponseHead => ({ status: 200, headers })

describe('readCookie', () => {
  const cases: [header: string | string[] | undefined, expected: string | null, why: string][] = [
    [undefined, null, 'no Cookie header'],
    ['gh=abc', 'abc', 'the only pair'],
    ['a=1; gh=abc; b=2', 'abc', 'between others'],
    ['a=1;gh=abc', 'abc', 'without the space after ;'],
    ['  gh=abc  ', 'abc', 'surrounded by whitespace'],
    ['xgh=1; ghx=2; gh=3', '3', 'not a name that ends or starts with it'],
    ['a=gh=1; gh=2', '2', 'not inside another value'],
    ['GH=1', null, 'names are case-sensitive'],
    ['gh="abc"', 'abc', 'a quoted value loses its quotes'],
    ['gh=', '', 'an empty value'],
    ['gh=one; gh=two', 'one', 'the first of two (the more specific path)'],
    [['a=1', 'gh=abc'], 'abc', 'from split header lines (HTTP/2)'],
    ['a=1; b=2', null, 'absent'],
  ]
  for (const [header, expected, why] of cases)
    it(`${JSON.stringify(header)} -> ${JSON.stringify(expected)}: ${why}`, () => {
      assert.equal(readCookie(header, 'gh'), expected)
    })
})

describe('the opaque cookie value', () => {
  const origin = 'http://10.1.2.3:8080'
  const value = stickyCookieValue('users', 'gh', origin)

  it('is 128 bits of base64url, all allowed in a cookie-value', () => {
    assert.match(value, /^[A-Za-z0-9_-]{22}$/)
  })

  it('does not reveal the address', () => {
    const decoded = Buffer.from(value, 'base64url').toString('latin1')
    for (const part of ['10.1.2.3', '8080', '10.1', origin]) {
      assert.equal(value.includes(part), false)
      assert.equal(decoded.includes(part), false)
    }
  })

  it('is the same for the same service, cookie and target (another instance, a reload)', () => {
    assert.equal(stickyCookieValue('users', 'gh', origin), value)
  })

  it('differs per target, per service and per cookie name', () => {
    const others = [
      stickyCookieValue('users', 'gh', 'http://10.1.2.3:8081'),
      stickyCookieValue('orders', 'gh', origin),
      stickyCookieValue('users', 'other', origin),
    ]
    assert.equal(new Set([value, ...others]).size, 4)
  })
})

describe('sticky by cookie', () => {
  const cookie = (extra: Partial<Extract<StickyConfig, { by: 'cookie' }>> = {}): StickyConfig => ({
    by: 'cookie',
    name: 'gh',
    maxAgeMs: null,
    secure: null,
    ...extra,
  })
  const [a, b] = targets('http://10.0.0.1:80', 'http://10.0.0.2:80')
  const sticky = createSticky(service('users', cookie()), [a, b]) as Sticky
  const cookieOf = (target: Target) => stickyCookieValue('users', 'gh', target.origin)

  it('finds the target a cookie names, among other cookies', () => {
    assert.equal(sticky.find(request({ cookie: `gh=${cookieOf(b)}` })), b)
    assert.equal(sticky.find(request({ cookie: `a=1; gh=${cookieOf(a)}; z=2` })), a)
  })

  it('ignores no cookie, a tampered value, and a value of another service', () => {
    assert.equal(sticky.find(request({})), null)
    assert.equal(sticky.find(request({ cookie: `gh=${cookieOf(b).slice(0, -1)}x` })), null)
    assert.equal(sticky.find(request({ cookie: 'gh=http://10.0.0.1:80' })), null)
    const otherService = stickyCookieValue('orders', 'gh', b.origin)
    assert.equal(sticky.find(request({ cookie: `gh=${otherService}` })), null)
  })

  it('pins with an HttpOnly, SameSite=Lax session cookie for the whole site', () => {
    const response = head()
    sticky.pin(request({}), b, response)
    assert.deepEqual(response.headers['set-cookie'], [`gh=${cookieOf(b)}; Path=/; HttpOnly; SameSite=Lax`])
  })

  it('adds Max-Age in whole seconds, rounded up', () => {
    const withAge = createSticky(service('users', cookie({ maxAgeMs: 90_500 })), [a]) as Sticky
    const response = head()
    withAge.pin(request({}), a, response)
    assert.deepEqual(response.headers['set-cookie'], [
      `gh=${cookieOf(a)}; Path=/; HttpOnly; SameSite=Lax; Max-Age=91`,
    ])
  })

  it('is Secure on HTTPS listeners unless configured otherwise', () => {
    const setCookie = (secure: boolean | null, onHttps: boolean) => {
      const response = head()
      const withSecure = createSticky(service('users', cookie({ secure })), [a]) as Sticky
      withSecure.pin(request({ secure: onHttps }), a, response)
      return (response.headers['set-cookie'] as string[])[0]
    }
    assert.match(setCookie(null, true), /; Secure$/)
    assert.doesNotMatch(setCookie(null, false), /Secure/)
    assert.doesNotMatch(setCookie(false, true), /Secure/)
    assert.match(setCookie(true, false), /; Secure$/)
  })

  it('sends nothing when the client already holds the right cookie', () => {
    const response = head()
    sticky.pin(request({ cookie: `gh=${cookieOf(a)}` }), a, response)
    assert.equal(response.headers['set-cookie'], undefined)
  })

  it('re-pins a client whose cookie names another target', () => {
    const response = head()
    sticky.pin(request({ cookie: `gh=${cookieOf(a)}` }), b, response)
    assert.deepEqual(response.headers['set-cookie'], [`gh=${cookieOf(b)}; Path=/; HttpOnly; SameSite=Lax`])
  })

  it("keeps the target's own cookies beside its own", () => {
    const one = head({ 'set-cookie': 'app=1; Path=/' })
    sticky.pin(request({}), a, one)
    assert.deepEqual(one.headers['set-cookie'], [
      'app=1; Path=/',
      `gh=${cookieOf(a)}; Path=/; HttpOnly; SameSite=Lax`,
    ])
    const two = head({ 'set-cookie': ['app=1', 'theme=dark'] })
    sticky.pin(request({}), a, two)
    assert.deepEqual(two.headers['set-cookie'], [
      'app=1',
      'theme=dark',
      `gh=${cookieOf(a)}; Path=/; HttpOnly; SameSite=Lax`,
    ])
  })

  it('refuses a cookie name that is not a token', () => {
    assert.throws(() => createSticky(service('users', cookie({ name: 'a b' })), [a]), /not a token/)
    assert.throws(() => createSticky(service('users', cookie({ name: 'a;b' })), [a]), /not a token/)
  })
})

describe('sticky by client address', () => {
  const ttlMs = 60_000
  /** An injected clock (lru-cache treats a start time of 0 as "no ttl", so it starts later). */
  let now = 1_000
  const clock = { now: () => now }
  const [a, b, c] = targets('http://10.0.1.1:80', 'http://10.0.1.2:80', 'http://10.0.1.3:80')
  const addressSticky = (list: Target[], previous: Sticky | null = null, ttl = ttlMs) =>
    createSticky(service('users', { by: 'ip', ttlMs: ttl }), list, previous, clock) as Sticky
  const from = (clientIp: string) => request({ clientIp })

  it('pins a client to the target that answered it, and clients apart', () => {
    const sticky = addressSticky([a, b, c])
    assert.equal(sticky.find(from('192.0.2.1')), null)
    sticky.pin(from('192.0.2.1'), b, head())
    sticky.pin(from('192.0.2.2'), c, head())
    assert.equal(sticky.find(from('192.0.2.1')), b)
    assert.equal(sticky.find(from('192.0.2.2')), c)
    assert.equal(sticky.find(from('192.0.2.3')), null)
    // A new target for the client (its old one was down) replaces the pin.
    sticky.pin(from('192.0.2.1'), a, head())
    assert.equal(sticky.find(from('192.0.2.1')), a)
  })

  it('forgets a client ttl after its last response, not its first', () => {
    const sticky = addressSticky([a, b, c])
    sticky.pin(from('192.0.2.9'), a, head())
    now += ttlMs - 1
    assert.equal(sticky.find(from('192.0.2.9')), a)
    sticky.pin(from('192.0.2.9'), a, head())
    now += ttlMs - 1
    assert.equal(sticky.find(from('192.0.2.9')), a)
    now += 2
    assert.equal(sticky.find(from('192.0.2.9')), null)
  })

  it('keeps its table across a reload, by origin; a target that left is ignored', () => {
    const before = addressSticky([a, b, c])
    before.pin(from('198.51.100.1'), a, head())
    before.pin(from('198.51.100.2'), c, head())
    const [a2, b2] = targets(a.origin, b.origin)
    const after = addressSticky([a2, b2], before)
    assert.equal(after.find(from('198.51.100.1')), a2)
    assert.equal(after.find(from('198.51.100.2')), null)
  })

  it(`remembers at most ${ADDRESS_TABLE_SIZE} clients, forgetting the least recently seen`, () => {
    const sticky = addressSticky([a, b])
    sticky.pin(from('10.255.255.255'), b, head())
    for (let i = 0; i < ADDRESS_TABLE_SIZE; i++)
      sticky.pin(from(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`), a, head())
    assert.equal(sticky.find(from('10.255.255.255')), null)
    assert.equal(sticky.find(from('10.0.0.0')), a)
    assert.equal(sticky.find(from('10.1.134.159')), a)
  })

  it('pins nobody with a ttl of 0, and never an unknown client', () => {
    const none = addressSticky([a], null, 0)
    none.pin(from('192.0.2.7'), a, head())
    assert.equal(none.find(from('192.0.2.7')), null)
    const sticky = addressSticky([a])
    sticky.pin(from(''), a, head())
    assert.equal(sticky.find(from('')), null)
  })

  it('never touches the response head', () => {
    const response = head({ 'set-cookie': 'app=1' })
    addressSticky([a]).pin(from('192.0.2.8'), a, response)
    assert.deepEqual(response.headers, { 'set-cookie': 'app=1' })
  })
})
