import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { StringMatchConfig } from '../config/types.ts'
import { valueMatcher } from '../runtime/compile.ts'
import { compilePath, type PathMatch } from './path-pattern.ts'
import {
  hostMatches,
  type MatchableRoute,
  precedenceOrder,
  type RouteFacts,
  type RouteResult,
  Router,
} from './router.ts'

interface TestRoute extends MatchableRoute {
  readonly name: string
}

interface RouteSpec {
  name?: string
  host?: string | string[]
  path: string
  match?: PathMatch
  methods?: string[]
  headers?: Record<string, string | StringMatchConfig>
  query?: Record<string, string | StringMatchConfig>
}

/** Routes as compile.ts builds them, from specs in file order. */
function routes(...specs: RouteSpec[]): TestRoute[] {
  const conditions = (spec: Record<string, string | StringMatchConfig> | undefined) =>
    Object.entries(spec ?? {}).map(
      ([name, m]) => [name.toLowerCase(), valueMatcher(typeof m === 'string' ? { equals: m } : m)] as const,
    )
  return specs.map((spec, index) => ({
    index,
    name: spec.name ?? `r${index}`,
    hosts: spec.host === undefined ? null : Array.isArray(spec.host) ? spec.host : [spec.host],
    path: compilePath(spec.path, spec.match ?? 'prefix'),
    methods: spec.methods === undefined ? null : new Set(spec.methods),
    headers: conditions(spec.headers),
    query: conditions(spec.query),
  }))
}

function facts(path: string, more: Partial<RouteFacts> = {}): RouteFacts {
  return { method: 'GET', host: 'example.com', path, headers: {}, query: '', ...more }
}

/** The matched route's name, or 404 / 405. */
function winner(router: Router<TestRoute>, path: string, more: Partial<RouteFacts> = {}): string {
  const result = router.find(facts(path, more))
  if (result.kind === 'match') return result.route.name
  return result.kind === 'not-found' ? '404' : '405'
}

describe('router: matching', () => {
  it('a lone catch-all route (no index lookup) matches every origin-form path, params empty', () => {
    const router = new Router(routes({ name: 'all', path: '/' }))
    for (const path of ['/', '/a', '/a/b/', '/%2F', '/a;b', '/x?y', `/${'s'.repeat(500)}`]) {
      const result = router.find(facts(path))
      assert.equal(result.kind === 'match' && result.route.name, 'all', path)
      assert.deepEqual(result.kind === 'match' && result.params, {}, path)
    }
    // Conditions still apply when the lookup is skipped.
    const guarded = new Router(
      routes({ name: 'get', path: '/', methods: ['GET'] }, { path: '/', host: 'a.example' }),
    )
    assert.equal(winner(guarded, '/x', { method: 'POST' }), '405')
    assert.equal(winner(guarded, '/x', { method: 'POST', host: 'a.example' }), 'r1')
  })

  it('a catch-all beside narrower routes still lets the narrower ones win', () => {
    const router = new Router(routes({ name: 'all', path: '/' }, { name: 'api', path: '/api' }))
    assert.equal(winner(router, '/api/users'), 'api')
    assert.equal(winner(router, '/apix'), 'all')
    assert.equal(winner(router, '/'), 'all')
  })

  it('matches exact hosts and *.example.com wildcards of exactly one label', () => {
    const router = new Router(
      routes(
        { name: 'exact', host: 'api.example.com', path: '/' },
        { name: 'wild', host: '*.example.com', path: '/' },
        { name: 'other', host: 'other.test', path: '/' },
      ),
    )
    assert.equal(winner(router, '/', { host: 'api.example.com' }), 'exact')
    assert.equal(winner(router, '/', { host: 'a.example.com' }), 'wild')
    assert.equal(winner(router, '/', { host: 'a.b.example.com' }), '404')
    assert.equal(winner(router, '/', { host: 'example.com' }), '404')
    assert.equal(winner(router, '/', { host: 'notexample.com' }), '404')
    assert.equal(winner(router, '/', { host: 'other.test' }), 'other')
    assert.equal(hostMatches('*.example.com', '.example.com'), false)
    assert.equal(hostMatches('*.example.com', 'xexample.com'), false)
  })

  it('matches a route without host on any host, even none', () => {
    const router = new Router(routes({ name: 'any', path: '/' }))
    assert.equal(winner(router, '/', { host: 'whatever.test' }), 'any')
    assert.equal(winner(router, '/', { host: '' }), 'any')
  })

  it('matches exact paths exactly: no sub-path, no trailing slash', () => {
    const router = new Router(routes({ name: 'exact', path: '/users', match: 'exact' }))
    assert.equal(winner(router, '/users'), 'exact')
    assert.equal(winner(router, '/users/'), '404')
    assert.equal(winner(router, '/users/1'), '404')
    assert.equal(winner(router, '/Users'), '404')
  })

  it('matches prefixes by whole segments, and / catches everything', () => {
    const router = new Router(routes({ name: 'users', path: '/users' }))
    assert.equal(winner(router, '/users'), 'users')
    assert.equal(winner(router, '/users/'), 'users')
    assert.equal(winner(router, '/users/1/posts'), 'users')
    assert.equal(winner(router, '/usersx'), '404')
    assert.equal(winner(router, '/'), '404')
    const all = new Router(routes({ name: 'all', path: '/' }))
    for (const path of ['/', '/x', '/users/1', '/a/b/c/']) assert.equal(winner(all, path), 'all', path)
  })

  it('matches a prefix written with a trailing slash only below it', () => {
    const router = new Router(routes({ name: 'below', path: '/docs/' }))
    assert.equal(winner(router, '/docs/'), 'below')
    assert.equal(winner(router, '/docs/a'), 'below')
    assert.equal(winner(router, '/docs'), '404')
  })

  it('captures :params, in exact and prefix routes', () => {
    const router = new Router(
      routes(
        { name: 'user', path: '/users/:id', match: 'exact' },
        { name: 'posts', path: '/blogs/:blog/posts' },
      ),
    )
    const user = router.find(facts('/users/42'))
    assert.equal(user.kind, 'match')
    assert.deepEqual(user.kind === 'match' && user.params, { id: '42' })
    const posts = router.find(facts('/blogs/b7/posts/3'))
    assert.deepEqual(posts.kind === 'match' && [posts.params, posts.matched], [
      { blog: 'b7' },
      '/blogs/b7/posts',
    ])
    assert.equal(winner(router, '/users/42/x'), '404')
    assert.equal(winner(router, '/users/'), '404', 'a param is never empty')
  })

  it('captures params longer than find-my-way’s default limit of 100 characters', () => {
    const router = new Router(routes({ name: 'user', path: '/users/:id', match: 'exact' }))
    const id = 'x'.repeat(500)
    const result = router.find(facts(`/users/${id}`))
    assert.deepEqual(result.kind === 'match' && result.params, { id })
  })

  it('matches params that share a segment with literals', () => {
    const router = new Router(
      routes(
        { name: 'json', path: '/files/:name.json', match: 'exact' },
        { name: 'version', path: '/v:version/items' },
      ),
    )
    const file = router.find(facts('/files/a.b.json'))
    assert.deepEqual(file.kind === 'match' && file.params, { name: 'a.b' })
    const version = router.find(facts('/v2/items/9'))
    assert.deepEqual(version.kind === 'match' && version.params, { version: '2' })
    assert.equal(winner(router, '/files/a.xml'), '404')
  })

  it('matches regex paths anchored at the start, with named groups as params', () => {
    const router = new Router(
      routes(
        { name: 'versioned', path: '^/v(?<version>\\d+)/(?<rest>.*)$', match: 'regex' },
        { name: 'either', path: '^/a|/b', match: 'regex' },
      ),
    )
    const result = router.find(facts('/v3/users/1'))
    assert.deepEqual(result.kind === 'match' && [result.route.name, result.params], [
      'versioned',
      { version: '3', rest: 'users/1' },
    ])
    assert.equal(winner(router, '/x/v3/users'), '404', 'never a match further along the path')
    assert.equal(winner(router, '/b/c'), 'either')
    assert.equal(winner(router, '/x/b'), '404', 'an alternation stays anchored')
  })

  it('matches a route whose literal segments are percent-encoded, and odd paths on catch-alls', () => {
    const router = new Router(
      routes(
        { name: 'encoded', path: '/files/a%2Fb', match: 'exact' },
        { name: 'param', path: '/tags/:tag', match: 'exact' },
        { name: 'all', path: '/' },
      ),
    )
    assert.equal(winner(router, '/files/a%2Fb'), 'encoded')
    // find-my-way would decode %2F into a separator, reject %zz and cut at # and ?.
    assert.equal(winner(router, '/files/a/b'), 'all')
    const tag = router.find(facts('/tags/c%23'))
    assert.deepEqual(tag.kind === 'match' && [tag.route.name, tag.params], ['param', { tag: 'c%23' }])
    assert.equal(winner(router, '/%zz'), 'all')
    assert.equal(winner(router, '/tags/a#b'), 'param')
    assert.equal(winner(router, '/tags/a?b'), 'param')
  })

  it('matches methods, and a GET route takes HEAD', () => {
    const router = new Router(routes({ name: 'read', path: '/items', methods: ['GET'] }))
    assert.equal(winner(router, '/items'), 'read')
    assert.equal(winner(router, '/items', { method: 'HEAD' }), 'read')
    assert.equal(winner(router, '/items', { method: 'POST' }), '405')
  })

  it('matches headers: exact, regex, present and absent', () => {
    const router = new Router(
      routes(
        { name: 'exact', path: '/', headers: { 'X-Version': '2' } },
        { name: 'regex', path: '/', headers: { 'x-client': { regex: '^mobile-' } } },
        { name: 'present', path: '/', headers: { 'x-debug': { present: true } } },
        { name: 'absent', path: '/', headers: { authorization: { present: false } } },
      ),
    )
    const auth = { authorization: 'Bearer t' }
    assert.equal(winner(router, '/', { headers: { 'x-version': '2' } }), 'exact')
    assert.equal(winner(router, '/', { headers: { 'x-version': '20', ...auth } }), '404')
    assert.equal(winner(router, '/', { headers: { 'x-client': 'mobile-ios', ...auth } }), 'regex')
    assert.equal(winner(router, '/', { headers: { 'x-client': 'web-mobile-', ...auth } }), '404')
    assert.equal(winner(router, '/', { headers: { 'x-debug': '', ...auth } }), 'present')
    assert.equal(winner(router, '/', { headers: {} }), 'absent')
    assert.equal(winner(router, '/', { headers: auth }), '404')
  })

  it('matches query parameters: exact, regex, present and absent; the first value counts', () => {
    const router = new Router(
      routes(
        { name: 'exact', path: '/', query: { v: '2' } },
        { name: 'regex', path: '/', query: { id: { regex: '^\\d+$' } } },
        { name: 'present', path: '/', query: { debug: { present: true } } },
        { name: 'absent', path: '/', query: { token: { present: false } } },
      ),
    )
    assert.equal(winner(router, '/', { query: 'v=2' }), 'exact')
    assert.equal(winner(router, '/', { query: 'v=1&v=2&token=t' }), '404')
    assert.equal(winner(router, '/', { query: 'id=123&token=t' }), 'regex')
    assert.equal(winner(router, '/', { query: 'id=12a&token=t' }), '404')
    assert.equal(winner(router, '/', { query: 'debug&token=t' }), 'present')
    assert.equal(winner(router, '/', { query: 'a=1' }), 'absent')
    assert.equal(winner(router, '/', { query: 'token=' }), '404')
    assert.equal(winner(router, '/', { query: 'v=%32' }), 'exact', 'values are compared decoded')
  })
})

describe('router: precedence', () => {
  it('puts an exact host before a wildcard before any host, whatever the file order', () => {
    const router = new Router(
      routes(
        { name: 'any', path: '/' },
        { name: 'wild', host: '*.example.com', path: '/' },
        { name: 'exact', host: 'api.example.com', path: '/' },
      ),
    )
    assert.equal(winner(router, '/', { host: 'api.example.com' }), 'exact')
    assert.equal(winner(router, '/', { host: 'web.example.com' }), 'wild')
    assert.equal(winner(router, '/', { host: 'example.org' }), 'any')
  })

  it('ranks a route with several hosts by the host that matched', () => {
    const router = new Router(
      routes(
        { name: 'multi', host: ['a.test', '*.b.test'], path: '/' },
        { name: 'wild-b', host: '*.b.test', path: '/x' },
      ),
    )
    assert.equal(winner(router, '/x', { host: 'a.test' }), 'multi')
    // Both match under a wildcard host: the longer path decides, not multi's exact a.test.
    assert.equal(winner(router, '/x', { host: 'q.b.test' }), 'wild-b')
  })

  it('orders wildcard hosts by suffix length, deterministically', () => {
    const order = precedenceOrder(
      routes({ name: 'short', host: '*.a.test', path: '/' }, { name: 'long', host: '*.b.a.test', path: '/' }),
    )
    assert.deepEqual(
      order.map((entry) => entry.route.name),
      ['long', 'short'],
    )
  })

  it('puts exact before exact-with-params before regex before prefix', () => {
    const all = routes(
      { name: 'prefix', path: '/users/me' },
      { name: 'regex', path: '^/users/m.$', match: 'regex' },
      { name: 'param', path: '/users/:id', match: 'exact' },
      { name: 'exact', path: '/users/me', match: 'exact' },
    )
    assert.equal(winner(new Router(all), '/users/me'), 'exact')
    assert.equal(winner(new Router(all.slice(0, 3)), '/users/me'), 'param')
    assert.equal(winner(new Router(all.slice(0, 2)), '/users/me'), 'regex')
    assert.equal(winner(new Router(all.slice(0, 1)), '/users/me'), 'prefix')
  })

  it('prefers the exact static path over the param one, and the param one for other values', () => {
    const router = new Router(
      routes(
        { name: 'param', path: '/users/:id', match: 'exact' },
        { name: 'me', path: '/users/me', match: 'exact' },
      ),
    )
    assert.equal(winner(router, '/users/me'), 'me')
    assert.equal(winner(router, '/users/you'), 'param')
  })

  it('prefers the longer prefix, by segments', () => {
    const router = new Router(
      routes(
        { name: 'api', path: '/api' },
        { name: 'users', path: '/api/users' },
        { name: 'root', path: '/' },
      ),
    )
    assert.equal(winner(router, '/api/users/1'), 'users')
    assert.equal(winner(router, '/api/orders'), 'api')
    assert.equal(winner(router, '/other'), 'root')
  })

  it('puts a literal segment before a param at the same place, then the longer pattern', () => {
    const router = new Router(
      routes(
        { name: 'param', path: '/users/:id' },
        { name: 'me', path: '/users/me' },
        { name: 'left-param', path: '/a/:x/ccccccccc', match: 'exact' },
        { name: 'left-literal', path: '/a/b/:y', match: 'exact' },
      ),
    )
    assert.equal(winner(router, '/users/me/settings'), 'me')
    assert.equal(winner(router, '/users/7/settings'), 'param')
    assert.equal(winner(router, '/a/b/ccccccccc'), 'left-literal')
    const longer = new Router(routes({ name: 'short', path: '/docs' }, { name: 'slash', path: '/docs/' }))
    assert.equal(winner(longer, '/docs/a'), 'slash')
    assert.equal(winner(longer, '/docs'), 'short')
  })

  it('prefers more conditions, then file order', () => {
    const router = new Router(
      routes(
        { name: 'first', path: '/x' },
        { name: 'second', path: '/x' },
        { name: 'get', path: '/x', methods: ['GET'] },
        { name: 'get-beta', path: '/x', methods: ['GET'], headers: { 'x-beta': '1' } },
      ),
    )
    assert.equal(winner(router, '/x', { headers: { 'x-beta': '1' } }), 'get-beta')
    assert.equal(winner(router, '/x'), 'get')
    assert.equal(winner(router, '/x', { method: 'POST' }), 'first')
  })

  it('keeps the longer regex first, then file order among equals', () => {
    const router = new Router(
      routes(
        { name: 'short', path: '^/a', match: 'regex' },
        { name: 'long', path: '^/a/b+', match: 'regex' },
        { name: 'twin', path: '^/a', match: 'regex' },
      ),
    )
    assert.equal(winner(router, '/a/bb'), 'long')
    assert.equal(winner(router, '/a/c'), 'short')
  })
})

describe('router: fall-through', () => {
  it('falls from a host-specific route to a less specific one when the host does not match', () => {
    const router = new Router(
      routes({ name: 'A', host: 'a.com', path: '/api/users' }, { name: 'B', path: '/api' }),
    )
    assert.equal(winner(router, '/api/users/1', { host: 'b.com' }), 'B')
    assert.equal(winner(router, '/api/users/1', { host: 'a.com' }), 'A')
  })

  it('falls from a prefix route failing a header condition to the next that matches', () => {
    const router = new Router(
      routes(
        { name: 'admin', path: '/users/admin', headers: { 'x-admin': 'yes' } },
        { name: 'users', path: '/users' },
      ),
    )
    assert.equal(winner(router, '/users/admin/x', { headers: { 'x-admin': 'yes' } }), 'admin')
    assert.equal(winner(router, '/users/admin/x'), 'users')
  })

  it('reaches an exact param route from a path the index sends to a literal prefix node', () => {
    const router = new Router(
      routes(
        { name: 'admin', path: '/users/admin', headers: { 'x-admin': 'yes' } },
        { name: 'sub', path: '/users/:id/x', match: 'exact' },
      ),
    )
    assert.equal(winner(router, '/users/admin/x'), 'sub')
    assert.equal(winner(router, '/users/admin/x', { headers: { 'x-admin': 'yes' } }), 'sub')
    assert.equal(winner(router, '/users/admin/y', { headers: { 'x-admin': 'yes' } }), 'admin')
    assert.equal(winner(router, '/users/admin/y'), '404')
  })

  it('falls from a static exact route failing its method to a param route', () => {
    const router = new Router(
      routes(
        { name: 'me', path: '/users/me', match: 'exact', methods: ['DELETE'] },
        { name: 'param', path: '/users/:id', match: 'exact' },
      ),
    )
    assert.equal(winner(router, '/users/me'), 'param')
    assert.equal(winner(router, '/users/me', { method: 'DELETE' }), 'me')
  })

  it('reaches a regex route when the index has no node for the path', () => {
    const router = new Router(
      routes({ name: 'users', path: '/users' }, { name: 'regex', path: '^/reports/\\d+$', match: 'regex' }),
    )
    assert.equal(winner(router, '/reports/12'), 'regex')
    assert.equal(winner(router, '/reports/x'), '404')
  })
})

describe('router: 404 and 405', () => {
  it('answers 405 with the union of methods when only the method is wrong', () => {
    const router = new Router(
      routes(
        { name: 'read', path: '/items', methods: ['GET'] },
        { name: 'write', path: '/items', methods: ['POST', 'PUT'] },
        { name: 'other-host', host: 'x.test', path: '/items', methods: ['DELETE'] },
        { name: 'needs-header', path: '/items', methods: ['PATCH'], headers: { 'x-a': '1' } },
      ),
    )
    assert.deepEqual(router.find(facts('/items', { method: 'DELETE' })), {
      kind: 'method-not-allowed',
      allow: ['GET', 'HEAD', 'POST', 'PUT'],
    })
    assert.equal(winner(router, '/items', { method: 'PUT' }), 'write')
    assert.equal(winner(router, '/nothing', { method: 'DELETE' }), '404')
  })

  it('answers the match, not 405, when a less specific route takes the method', () => {
    const router = new Router(
      routes({ name: 'read', path: '/items', methods: ['GET'] }, { name: 'root', path: '/' }),
    )
    assert.equal(winner(router, '/items', { method: 'POST' }), 'root')
  })

  it('answers 404 for an empty table and for a path that is not origin-form', () => {
    assert.deepEqual(new Router<TestRoute>([]).find(facts('/')), { kind: 'not-found' })
    const router = new Router(routes({ name: 'all', path: '/' }))
    assert.equal(winner(router, '*'), '404')
  })
})

describe('router: the index never changes the answer of a linear scan', () => {
  // A seeded generator: the same cases every run, and a failure can be replayed.
  function random(seed: number): () => number {
    let state = seed
    return () => {
      state = (state + 0x6d2b79f5) | 0
      let t = Math.imul(state ^ (state >>> 15), 1 | state)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
  }
  const pick = <T>(next: () => number, items: readonly T[]): T => items[Math.floor(next() * items.length)]

  const ROUTE_SEGMENTS = ['a', 'b', 'me', ':id', ':x', 'v:ver', 'a.json', ':n.json', 'a%2Fb', '', 'x:1']
  const PATH_SEGMENTS = [
    'a',
    'b',
    'me',
    'x',
    'v1',
    'a.json',
    'b.c.json',
    'a%2Fb',
    '%zz',
    'a#b',
    'q?r',
    '',
    'x:1',
  ]
  const REGEXES = ['^/a', '^/(?<first>[^/]+)/b', '^/v\\d+/', '^/me$|^/a', '^/.*json$']
  const HOSTS = [undefined, 'a.test', '*.test', ['a.test', '*.b.test']]

  function randomRoutes(next: () => number): TestRoute[] {
    const specs: RouteSpec[] = []
    const count = 1 + Math.floor(next() * 8)
    for (let i = 0; i < count; i++) {
      const match = pick(next, ['prefix', 'prefix', 'exact', 'exact', 'regex'] as const)
      const depth = Math.floor(next() * 4)
      let path = ''
      for (let d = 0; d < depth; d++) path += `/${pick(next, ROUTE_SEGMENTS)}`
      if (path === '' || next() < 0.15) path += '/'
      // A pattern uses a param name once.
      let n = 0
      path = path.replace(/:(id|x|ver|n)/g, (_, name: string) => `:${name}${n++}`)
      specs.push({
        path: match === 'regex' ? pick(next, REGEXES) : path,
        match,
        host: pick(next, HOSTS),
        methods: next() < 0.3 ? [pick(next, ['GET', 'POST'])] : undefined,
        headers: next() < 0.2 ? { 'x-h': '1' } : undefined,
        query: next() < 0.1 ? { q: { present: true } } : undefined,
      })
    }
    return routes(...specs)
  }

  function randomFacts(next: () => number): RouteFacts {
    const depth = Math.floor(next() * 5)
    let path = ''
    for (let d = 0; d < depth; d++) path += `/${pick(next, PATH_SEGMENTS)}`
    if (path === '' || next() < 0.2) path += '/'
    return {
      method: pick(next, ['GET', 'HEAD', 'POST', 'PUT']),
      host: pick(next, ['a.test', 'b.test', 'c.b.test', 'other']),
      path,
      headers: next() < 0.5 ? { 'x-h': '1' } : {},
      query: next() < 0.5 ? 'q=1' : '',
    }
  }

  /** The reference: every route, in precedence order, full matcher, no index. */
  function linearScan(all: TestRoute[], request: RouteFacts): RouteResult<TestRoute> {
    const allow = new Set<string>()
    const query = new URLSearchParams(request.query)
    for (const { route, host } of precedenceOrder(all)) {
      if (host !== null && !hostMatches(host, request.host)) continue
      const match = route.path.regex.exec(request.path)
      if (match === null) continue
      if (!route.headers.every(([name, ok]) => ok(request.headers[name] as string | undefined))) continue
      if (!route.query.every(([name, ok]) => ok(query.get(name) ?? undefined))) continue
      const methods = route.methods
      if (methods !== null && !methods.has(request.method)) {
        if (!(request.method === 'HEAD' && methods.has('GET'))) {
          for (const method of methods) allow.add(method)
          if (methods.has('GET')) allow.add('HEAD')
          continue
        }
      }
      return { kind: 'match', route, params: { ...match.groups }, matched: match[0] }
    }
    return allow.size > 0 ? { kind: 'method-not-allowed', allow: [...allow].sort() } : { kind: 'not-found' }
  }

  it('agrees with a linear scan over 400 random route tables', () => {
    const next = random(20261123)
    let matches = 0
    for (let table = 0; table < 400; table++) {
      const all = randomRoutes(next)
      const router = new Router(all)
      for (let request = 0; request < 40; request++) {
        const input = randomFacts(next)
        const expected = linearScan(all, input)
        const actual = router.find(input)
        if (expected.kind === 'match') matches++
        assert.deepEqual(
          actual,
          expected,
          `table ${table}: ${all.map((r) => `${r.path.kind} ${r.path.source} ${r.hosts ?? '*'}`).join(' | ')}; request ${JSON.stringify(input)}`,
        )
      }
    }
    // The generator must produce matches, or the comparison proves little.
    assert.ok(matches > 2000, `only ${matches} matches`)
  })
})
