/**
 * ajv errors -> readable problems. A union (anyOf) reports only the branch
 * that fits the value's type, or "expected one of" when none does; unknown
 * keys get a did-you-mean and point at the key itself.
 */
import type { ErrorObject } from 'ajv'
import type { LoadedFile } from './load.ts'
import { type ConfigProblem, didYouMean, formatPath, type PathSegment } from './problems.ts'
import { DURATION_PATTERN, SIZE_PATTERN } from './units.ts'

export function schemaProblems(
  errors: readonly ErrorObject[],
  loaded: LoadedFile,
  prefix: readonly PathSegment[] = [],
): ConfigProblem[] {
  const kept = pruneUnions(errors)
  const problems: ConfigProblem[] = []
  const seen = new Set<string>()
  for (const error of kept) {
    const path = [...prefix, ...toSegments(error.instancePath, loaded.data, prefix)]
    const { message, key } = describe(error)
    const at = key === undefined ? loaded.locate(path) : loaded.locateKey([...path, key])
    const fullPath = key === undefined ? path : [...path, key]
    const problem = { file: loaded.file, ...at, path: formatPath(fullPath), message }
    const id = `${problem.path}\0${message}`
    if (seen.has(id)) continue
    seen.add(id)
    problems.push(problem)
  }
  return problems
}

function describe(error: ErrorObject): { message: string; key?: string } {
  const p = error.params as Record<string, unknown>
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(p.additionalProperty)
      const allowed = Object.keys((error.parentSchema as { properties?: object })?.properties ?? {})
      return { key, message: `unknown key ${JSON.stringify(key)}${didYouMean(key, allowed)}` }
    }
    case 'required':
      return { message: `missing required key ${JSON.stringify(p.missingProperty)}` }
    case 'type':
      return { message: `expected ${p.type}, got ${describeValue(error.data)}` }
    case 'pattern':
      if (p.pattern === DURATION_PATTERN)
        return { message: `expected a duration like 250ms, 30s, 5m, got ${describeValue(error.data)}` }
      if (p.pattern === SIZE_PATTERN)
        return {
          message: `expected a size like 64kb, 1mb or a number of bytes, got ${describeValue(error.data)}`,
        }
      return { message: `expected a value matching ${p.pattern}, got ${describeValue(error.data)}` }
    case 'const':
      return { message: `expected ${JSON.stringify(p.allowedValue)}, got ${describeValue(error.data)}` }
    case 'anyOf': {
      const consts = unionConsts(error.schema)
      if (consts.length > 0) {
        const got = typeof error.data === 'string' ? didYouMean(error.data, consts.map(String)) : ''
        return {
          message: `expected one of ${consts.map((c) => JSON.stringify(c)).join(', ')}, got ${describeValue(error.data)}${got}`,
        }
      }
      const description = (error.parentSchema as { description?: string })?.description
      return {
        message: `expected ${description ?? 'another kind of value'}, got ${describeValue(error.data)}`,
      }
    }
    case 'minItems':
      return { message: `expected at least ${p.limit} item(s)` }
    case 'minimum':
    case 'maximum':
      return { message: `expected a number ${p.comparison} ${p.limit}, got ${describeValue(error.data)}` }
    default:
      return { message: error.message ?? error.keyword }
  }
}

function unionConsts(branches: unknown): unknown[] {
  if (!Array.isArray(branches)) return []
  const consts = branches.map((b) => (b as { const?: unknown }).const)
  return consts.every((c) => c !== undefined) ? consts : []
}

/** For each failed anyOf, keep the errors of the branch whose type fits the value; else just the anyOf. */
function pruneUnions(errors: readonly ErrorObject[]): ErrorObject[] {
  const unions = errors.filter((e) => e.keyword === 'anyOf')
  if (unions.length === 0) return [...errors]
  const dropped = new Set<ErrorObject>()
  // Innermost unions first, so an outer union sees its inner one already pruned.
  for (const union of [...unions].sort((a, b) => b.schemaPath.length - a.schemaPath.length)) {
    const base = union.schemaPath.slice(0, -'/anyOf'.length)
    const branchOf = (e: ErrorObject) => {
      const rest = e.schemaPath.startsWith(`${base}/anyOf/`) ? e.schemaPath.slice(base.length + 7) : null
      return rest === null || e === union ? -1 : Number.parseInt(rest, 10)
    }
    const byBranch = new Map<number, ErrorObject[]>()
    for (const e of errors) {
      const branch = branchOf(e)
      if (branch >= 0 && !dropped.has(e)) byBranch.set(branch, [...(byBranch.get(branch) ?? []), e])
    }
    const fitting = [...byBranch.entries()].filter(([, list]) =>
      list.every(
        (e) => !(e.instancePath === union.instancePath && (e.keyword === 'type' || e.keyword === 'const')),
      ),
    )
    if (fitting.length === 1) {
      for (const [branch, list] of byBranch)
        if (branch !== fitting[0][0]) for (const e of list) dropped.add(e)
      dropped.add(union)
    } else {
      for (const list of byBranch.values()) for (const e of list) dropped.add(e)
    }
  }
  return errors.filter((e) => !dropped.has(e))
}

function toSegments(pointer: string, data: unknown, prefix: readonly PathSegment[]): PathSegment[] {
  if (pointer === '') return []
  let node: unknown = data
  for (const segment of prefix) node = (node as Record<string | number, unknown>)?.[segment]
  return pointer
    .slice(1)
    .split('/')
    .map((raw) => {
      const key = raw.replace(/~1/g, '/').replace(/~0/g, '~')
      const segment: PathSegment = Array.isArray(node) ? Number(key) : key
      node = (node as Record<string | number, unknown>)?.[segment]
      return segment
    })
}

function describeValue(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a map'
  return JSON.stringify(value)
}
