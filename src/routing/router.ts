/**
 * Request facts -> the route that takes the request, or why none does. Pure.
 *
 * Precedence (docs/routing.md), most specific first; the first route in this
 * order whose every condition holds wins:
 *   1. host: an exact name, then a wildcard `*.example.com` (longer suffix
 *      first), then routes without host. A route with several hosts ranks by
 *      the host that matched the request.
 *   2. path kind: exact without params, exact with params, regex, prefix
 *      (regex before prefix, as in nginx).
 *   3. longer path pattern: more segments; then, from the left, the first
 *      segment where one pattern has a literal and the other a param goes to
 *      the literal (`/users/me` before `/users/:id`); then more characters.
 *   4. more conditions (methods counts one, each header and query one).
 *   5. file order.
 * A more specific route whose other conditions fail does not stop the search:
 * the request falls through to the next route in this order.
 *
 * 405 when some route would take the request but for its method (Allow lists
 * the union of their methods); 404 otherwise. A route taking GET takes HEAD
 * (RFC 9110 §9.3.2: HEAD is GET without the body).
 *
 * find-my-way is only the index. Each of its nodes holds, in precedence
 * order, every route that could match a path reaching the node (couldMatch);
 * the first whose full matcher passes wins. A path that reaches no node can
 * only match regex routes. So the index never changes the answer of a linear
 * scan in precedence order, it only skips routes that cannot match.
 */
import FindMyWay from 'find-my-way'
import { type CompiledPath, couldMatch, indexKeys, indexLookupPath, parseIndexKey } from './path-pattern.ts'

export interface RouteFacts {
  method: string
  /** Lower-case, without port. */
  host: string
  /** Normalized (request-facts.ts normalizePath), without the query. */
  path: string
  headers: Record<string, string | string[] | undefined>
  /** Raw query string without `?`, or ''. */
  query: string
}

export type ValueMatcher = (value: string | undefined) => boolean

export interface MatchableRoute {
  readonly index: number
  /** Lower-case exact names or `*.suffix`; null: any host. */
  readonly hosts: readonly string[] | null
  readonly path: CompiledPath
  readonly methods: ReadonlySet<string> | null
  /** Lower-case header names. */
  readonly headers: readonly (readonly [string, ValueMatcher])[]
  readonly query: readonly (readonly [string, ValueMatcher])[]
}

/** A route under one of its host patterns (null: any host); the unit precedence orders. */
export interface RouteEntry<R extends MatchableRoute = MatchableRoute> {
  readonly route: R
  readonly host: string | null
}

export type RouteResult<R> =
  | { kind: 'match'; route: R; params: Readonly<Record<string, string>>; matched: string }
  | { kind: 'method-not-allowed'; allow: string[] }
  | { kind: 'not-found' }

/** The params of a route without any: one object shared by every such match (and context), so frozen. */
export const NO_PARAMS: Readonly<Record<string, string>> = Object.freeze({})

export class Router<R extends MatchableRoute> {
  readonly #index = FindMyWay({
    ignoreTrailingSlash: false,
    ignoreDuplicateSlashes: false,
    caseSensitive: true,
    // The default (100) would send a longer segment past its param node.
    maxParamLength: Number.MAX_SAFE_INTEGER,
  })
  /** Every entry, in precedence order: for paths the index cannot take. */
  readonly #ordered: RouteEntry<R>[]
  readonly #regexOnly: RouteEntry<R>[]
  /**
   * False when a lookup could never narrow the candidates: every path
   * reaches a node (a `/*` key exists) and every node holds every route, as
   * with one catch-all route. The lookup is then skipped, not just cheap.
   */
  readonly #narrows: boolean

  constructor(routes: readonly R[]) {
    this.#ordered = precedenceOrder(routes)
    this.#regexOnly = this.#ordered.filter((entry) => entry.route.path.kind === 'regex')
    const keys = new Set(routes.flatMap((route) => indexKeys(route.path)))
    let narrows = !keys.has('/*')
    for (const key of keys) {
      const node = parseIndexKey(key)
      const candidates = this.#ordered.filter((entry) => couldMatch(node, entry.route.path))
      if (candidates.length < this.#ordered.length) narrows = true
      this.#index.on('GET', key, () => {}, candidates)
    }
    this.#narrows = narrows
  }

  find(facts: RouteFacts): RouteResult<R> {
    let candidates: RouteEntry<R>[]
    if (facts.path.startsWith('/') && this.#narrows) {
      const node = this.#index.find('GET', indexLookupPath(facts.path))
      candidates = node ? (node.store as RouteEntry<R>[]) : this.#regexOnly
    } else candidates = this.#ordered
    let query: URLSearchParams | undefined
    let allow: Set<string> | undefined
    for (const { route, host } of candidates) {
      if (host !== null && !hostMatches(host, facts.host)) continue
      const match = route.path.regex.exec(facts.path)
      if (match === null) continue
      if (!headersMatch(route, facts.headers)) continue
      if (route.query.length > 0) {
        query ??= new URLSearchParams(facts.query)
        if (!queryMatches(route, query)) continue
      }
      if (route.methods !== null && !methodAllowed(route.methods, facts.method)) {
        allow ??= new Set()
        for (const method of route.methods) allow.add(method)
        if (route.methods.has('GET')) allow.add('HEAD')
        continue
      }
      // A route without params (the common catch-all) shares one frozen empty object instead of a copy per request.
      const params = match.groups === undefined ? NO_PARAMS : { ...match.groups }
      return { kind: 'match', route, params, matched: match[0] }
    }
    if (allow !== undefined) return { kind: 'method-not-allowed', allow: [...allow].sort() }
    return { kind: 'not-found' }
  }
}

function methodAllowed(methods: ReadonlySet<string>, method: string): boolean {
  return methods.has(method) || (method === 'HEAD' && methods.has('GET'))
}

/** `*.example.com` matches exactly one more label: a.example.com, not a.b.example.com nor example.com. */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === host) return true
  if (!pattern.startsWith('*.')) return false
  const suffix = pattern.slice(1)
  return (
    host.length > suffix.length && host.endsWith(suffix) && host.indexOf('.') === host.length - suffix.length
  )
}

function headersMatch(route: MatchableRoute, headers: RouteFacts['headers']): boolean {
  for (const [name, matches] of route.headers) {
    const value = headers[name]
    if (!matches(Array.isArray(value) ? value.join(', ') : value)) return false
  }
  return true
}

/** The first value of a repeated parameter is the one conditions see. */
function queryMatches(route: MatchableRoute, query: URLSearchParams): boolean {
  for (const [name, matches] of route.query) {
    if (!matches(query.get(name) ?? undefined)) return false
  }
  return true
}

/** Every route once per host pattern (once if it has none), most specific first. */
export function precedenceOrder<R extends MatchableRoute>(routes: readonly R[]): RouteEntry<R>[] {
  const entries = routes.flatMap((route): RouteEntry<R>[] =>
    route.hosts === null ? [{ route, host: null }] : route.hosts.map((host) => ({ route, host })),
  )
  return entries.sort(compareSpecificity)
}

/** Negative when `a` goes first. The header comment has the rules. */
export function compareSpecificity(a: RouteEntry, b: RouteEntry): number {
  return (
    compareHost(a.host, b.host) ||
    kindRank(b.route.path) - kindRank(a.route.path) ||
    b.route.path.segments.length - a.route.path.segments.length ||
    literalFirst(a.route.path, b.route.path) ||
    b.route.path.source.length - a.route.path.source.length ||
    conditionCount(b.route) - conditionCount(a.route) ||
    a.route.index - b.route.index
  )
}

function compareHost(a: string | null, b: string | null): number {
  const rank = (host: string | null) => (host === null ? 0 : host.startsWith('*.') ? 1 : 2)
  const byRank = rank(b) - rank(a)
  if (byRank !== 0 || a === null || b === null || !a.startsWith('*.')) return byRank
  return b.length - a.length
}

const KIND_RANK = { exact: 3, regex: 1, prefix: 0 } as const

function kindRank(path: CompiledPath): number {
  if (path.kind === 'exact') return path.hasParams ? 2 : 3
  return KIND_RANK[path.kind]
}

/** From the left, the first position where one has a literal segment and the other a param decides. */
function literalFirst(a: CompiledPath, b: CompiledPath): number {
  const n = Math.min(a.segments.length, b.segments.length)
  for (let i = 0; i < n; i++) {
    const aLiteral = a.segments[i] !== null
    if (aLiteral !== (b.segments[i] !== null)) return aLiteral ? -1 : 1
  }
  return 0
}

function conditionCount(route: MatchableRoute): number {
  return (route.methods === null ? 0 : 1) + route.headers.length + route.query.length
}
