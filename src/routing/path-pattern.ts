/**
 * A route's path pattern compiled once: a matcher that yields the matched
 * prefix and the params, the key it has in the find-my-way index, and its
 * segments for the "could this route match URLs of that node" test.
 */
export type PathMatch = 'prefix' | 'exact' | 'regex'

export interface CompiledPath {
  readonly kind: PathMatch
  readonly source: string
  /** Anchored at the start; group 0 is the matched part (the whole path for exact, the prefix for prefix). */
  readonly regex: RegExp
  readonly paramNames: readonly string[]
  /** Segments with params as null; empty for regex patterns. */
  readonly segments: readonly (string | null)[]
  readonly hasParams: boolean
}

const PARAM = /:([A-Za-z_][A-Za-z0-9_]*)/g

export function compilePath(source: string, kind: PathMatch): CompiledPath {
  if (kind === 'regex') {
    return { kind, source, regex: new RegExp(source), paramNames: [], segments: [], hasParams: false }
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
    .map((segment) => (segment.includes(':') ? null : segment))
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

/** The find-my-way paths that lead to this pattern's node(s). Params are renamed so equal shapes share a node. */
export function indexKeys(path: CompiledPath): string[] {
  if (path.kind === 'regex') return []
  let n = 0
  const key = path.source.replace(PARAM, () => `:p${n++}`)
  if (path.kind === 'exact') return [key]
  return [key, key.endsWith('/') ? `${key}*` : key === '/' ? '/*' : `${key}/*`]
}

/**
 * Conservative: false only when no URL reaching the index node `nodeKey` can
 * match `path`. Static-static must be equal; a param matches any segment; a
 * trailing wildcard on either side matches any rest.
 */
export function couldMatch(nodeKey: string, path: CompiledPath): boolean {
  if (path.kind === 'regex') return true
  const nodeWild = nodeKey.endsWith('*')
  const node = (nodeWild ? nodeKey.slice(0, -1) : nodeKey).split('/').slice(1)
  if (nodeWild && node[node.length - 1] === '') node.pop()
  const route = path.segments
  const routeWild = path.kind === 'prefix'
  for (let i = 0; i < Math.max(node.length, route.length); i++) {
    if (i >= route.length) return routeWild
    if (i >= node.length) return nodeWild
    const a = node[i].includes(':') ? null : node[i]
    const b = route[i]
    if (a !== null && b !== null && a !== b) return false
  }
  return true
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
