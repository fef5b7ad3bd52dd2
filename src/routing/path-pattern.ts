/**
 * A route's path pattern compiled once: a matcher that yields the matched
 * part and the params, the keys it has in the find-my-way index, and its
 * segments for the "could this route match URLs reaching that node" test.
 *
 * Patterns are matched against the normalized path (request-facts.ts), still
 * percent-encoded: a literal in a pattern matches the same characters in the
 * path, never a decoded form of them.
 */
export type PathMatch = 'prefix' | 'exact' | 'regex'

export interface CompiledPath {
  readonly kind: PathMatch
  readonly source: string
  /** Anchored at the start; group 0 is the matched part (the whole path for exact, the prefix for prefix). */
  readonly regex: RegExp
  readonly paramNames: readonly string[]
  /**
   * Segments after the leading `/`, a segment holding a param as null; empty
   * for regex patterns. A prefix pattern's trailing `/` adds no segment.
   */
  readonly segments: readonly (string | null)[]
  readonly hasParams: boolean
}

const PARAM = /:([A-Za-z_][A-Za-z0-9_]*)/g
/**
 * Segments made only of these go into the index as they are. Anything else
 * (params, `%XX`, `:`, `;`, ...) becomes a whole-segment param in the index:
 * find-my-way decodes `%XX`, cuts at `?`/`#` and parses `:` itself, so such
 * a segment could reach the wrong node. The full matcher checks it anyway.
 */
const PLAIN_SEGMENT = /^[A-Za-z0-9._~-]*$/

export function compilePath(source: string, kind: PathMatch): CompiledPath {
  if (kind === 'regex') {
    // `^/a|/b` would match `/b` anywhere: the group keeps every branch anchored.
    const body = source.startsWith('^') ? source.slice(1) : source
    return {
      kind,
      source,
      regex: new RegExp(`^(?:${body})`),
      paramNames: [],
      segments: [],
      hasParams: false,
    }
  }
  const paramNames: string[] = []
  let body = ''
  let last = 0
  for (const match of source.matchAll(PARAM)) {
    body += escapeRegex(source.slice(last, match.index))
    body += `(?<${match[1]}>[^/]+?)`
    paramNames.push(match[1])
    last = match.index + match[0].length
  }
  body += escapeRegex(source.slice(last))
  // A prefix matches whole segments: /users matches /users and /users/1, not /usersx.
  const tail = kind === 'exact' ? '$' : source.endsWith('/') ? '' : '(?=/|$)'
  const segments = source
    .split('/')
    .slice(1)
    .map((segment) => (hasParam(segment) ? null : segment))
  if (kind === 'prefix' && source.endsWith('/')) segments.pop()
  return {
    kind,
    source,
    regex: new RegExp(`^${body}${tail}`),
    paramNames,
    segments,
    hasParams: paramNames.length > 0,
  }
}

/**
 * The find-my-way paths that lead to this pattern's node(s): literal plain
 * segments, every other segment as a whole-segment param (renamed so equal
 * shapes share a node), and `/*` for what a prefix leaves over.
 */
export function indexKeys(path: CompiledPath): string[] {
  if (path.kind === 'regex') return []
  let n = 0
  const key = path.source
    .split('/')
    .map((segment) => (PLAIN_SEGMENT.test(segment) ? segment : `:p${n++}`))
    .join('/')
  if (path.kind === 'exact') return [key]
  return [key, key.endsWith('/') ? `${key}*` : `${key}/*`]
}

/**
 * The path as the index is asked for it: characters find-my-way would decode
 * or cut at become \u0001, which no literal key segment holds, so such a
 * segment can only reach a param or wildcard node.
 */
export function indexLookupPath(path: string): string {
  return /[%?#;]/.test(path) ? path.replace(/[%?#;]/g, '\u0001') : path
}

/** An index key split once: literal segments, params as null, and whether it ends in a wildcard. */
export interface IndexNode {
  readonly segments: readonly (string | null)[]
  readonly wild: boolean
}

export function parseIndexKey(key: string): IndexNode {
  const wild = key.endsWith('*')
  const segments: (string | null)[] = (wild ? key.slice(0, -1) : key)
    .split('/')
    .slice(1)
    .map((segment) => (segment.startsWith(':') ? null : segment))
  if (wild && segments[segments.length - 1] === '') segments.pop()
  return { segments, wild }
}

/**
 * Conservative: false only when no path reaching the index node can match
 * `path`. Literal-literal must be equal; a param (on either side) matches
 * any segment; a trailing wildcard on either side matches any rest.
 */
export function couldMatch(node: IndexNode, path: CompiledPath): boolean {
  if (path.kind === 'regex') return true
  const route = path.segments
  const routeWild = path.kind === 'prefix'
  const length = Math.max(node.segments.length, route.length)
  for (let i = 0; i < length; i++) {
    if (i >= route.length) return routeWild
    if (i >= node.segments.length) return node.wild
    const a = node.segments[i]
    const b = route[i]
    if (a !== null && b !== null && a !== b) return false
  }
  return true
}

function hasParam(segment: string): boolean {
  return /:[A-Za-z_]/.test(segment)
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
