/**
 * Request facts -> the route that takes the request, or why none does. Pure.
 *
 * Precedence (docs/routing.md), most specific first, then file order:
 *   1. host: exact name, then wildcard (longer suffix first), then any host
 *   2. path kind: exact without params, exact with params, regex, prefix
 *      (regex before prefix as in nginx)
 *   3. longer path pattern (more segments, then more characters)
 *   4. more conditions (methods, headers, query)
 *   5. file order
 * find-my-way is the index: each of its nodes holds, in that order, every
 * route that could match a URL reaching the node, and the first whose full
 * matcher passes wins. A path that reaches no node can only match regex routes.
 */
import FindMyWay from 'find-my-way'
import { type CompiledPath, couldMatch, indexKeys } from './path-pattern.ts'

export interface RouteFacts {
  method: string
  /** Lower-case, without port. */
  host: string
  path: string
  headers: Record<string, string | string[] | undefined>
  /** Raw query string without `?`, or ''. */
  query: string
}

export type ValueMatcher = (value: string | undefined) => boolean

export interface MatchableRoute {
  readonly index: number
  readonly hosts: readonly string[] | null
  readonly path: CompiledPath
  readonly methods: ReadonlySet<string> | null
  readonly headers: readonly (readonly [string, ValueMatcher])[]
  readonly query: readonly (readonly [string, ValueMatcher])[]
}

export type RouteResult<R> =
  | { kind: 'match'; route: R; params: Record<string, string>; matched: string }
  | { kind: 'method-not-allowed'; allow: string[] }
  | { kind: 'not-found' }

export class Router<R extends MatchableRoute> {
  readonly #index = FindMyWay({
    ignoreTrailingSlash: false,
    ignoreDuplicateSlashes: false,
    caseSensitive: true,
  })
  readonly #regexOnly: R[]

  constructor(routes: readonly R[]) {
    const ordered = [...routes].sort(compareSpecificity)
    this.#regexOnly = ordered.filter((route) => route.path.kind === 'regex')
    const keys = new Set(routes.flatMap((route) => indexKeys(route.path)))
    for (const key of keys) {
      const candidates = ordered.filter((route) => couldMatch(key, route.path))
      this.#index.on('GET', key, () => {}, candidates)
    }
  }

  find(facts: RouteFacts): RouteResult<R> {
    const node = this.#index.find('GET', facts.path)
    const candidates = node ? (node.store as R[]) : this.#regexOnly
    let query: URLSearchParams | undefined
    let allow: Set<string> | undefined
    for (const route of candidates) {
      if (route.hosts !== null && !hostMatches(route.hosts, facts.host)) continue
      const match = route.path.regex.exec(facts.path)
      if (match === null) continue
      if (!headersMatch(route, facts.headers)) continue
      if (route.query.length > 0) {
        query ??= new URLSearchParams(facts.query)
        if (!queryMatches(route, query)) continue
      }
      if (route.methods !== null && !route.methods.has(facts.method)) {
        allow ??= new Set()
        for (const method of route.methods) allow.add(method)
        continue
      }
      return { kind: 'match', route, params: { ...match.groups }, matched: match[0] }
    }
    if (allow !== undefined) return { kind: 'method-not-allowed', allow: [...allow].sort() }
    return { kind: 'not-found' }
  }
}

function hostMatches(hosts: readonly string[], host: string): boolean {
  for (const pattern of hosts) {
    if (pattern === host) return true
    // *.example.com matches exactly one more label: a.example.com, not a.b.example.com.
    if (pattern.startsWith('*.')) {
      const suffix = pattern.slice(1)
      if (
        host.endsWith(suffix) &&
        host.indexOf('.') === host.length - suffix.length &&
        host.length > suffix.length
      )
        return true
    }
  }
  return false
}

function headersMatch(route: MatchableRoute, headers: RouteFacts['headers']): boolean {
  for (const [name, matches] of route.headers) {
    const value = headers[name]
    if (!matches(Array.isArray(value) ? value.join(', ') : value)) return false
  }
  return true
}

function queryMatches(route: MatchableRoute, query: URLSearchParams): boolean {
  for (const [name, matches] of route.query) {
    if (!matches(query.get(name) ?? undefined)) return false
  }
  return true
}

function hostRank(route: MatchableRoute): number {
  if (route.hosts === null) return 0
  let best = 0
  for (const host of route.hosts) best = Math.max(best, host.startsWith('*.') ? 1 + host.length / 1000 : 2)
  return best
}

const KIND_RANK = { exact: 3, regex: 1, prefix: 0 } as const

function kindRank(route: MatchableRoute): number {
  if (route.path.kind === 'exact') return route.path.hasParams ? 2 : 3
  return KIND_RANK[route.path.kind]
}

export function compareSpecificity(a: MatchableRoute, b: MatchableRoute): number {
  return (
    hostRank(b) - hostRank(a) ||
    kindRank(b) - kindRank(a) ||
    b.path.segments.length - a.path.segments.length ||
    b.path.source.length - a.path.source.length ||
    conditionCount(b) - conditionCount(a) ||
    a.index - b.index
  )
}

function conditionCount(route: MatchableRoute): number {
  return (route.methods === null ? 0 : 1) + route.headers.length + route.query.length
}
