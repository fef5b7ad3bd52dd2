/**
 * ajv errors -> readable problems. A union (anyOf) reports only the branch
 * the value was meant for (the one its type fits, or the one sharing its
 * keys), or "expected X, Y or Z" when no branch stands out; unknown keys get
 * a did-you-mean and point at the key itself.
 */
import type { ErrorObject, ValidateFunction } from 'ajv'
import { type LoadedFile, toPointer } from './load.ts'
import { type ConfigProblem, closest, didYouMean, formatPath, type PathSegment } from './problems.ts'
import { DURATION_PATTERN, SIZE_PATTERN } from './units.ts'

/** JSON Schema as ajv hands it back in verbose errors. */
interface SchemaNode {
  type?: string | string[]
  const?: unknown
  anyOf?: SchemaNode[]
  pattern?: string
  properties?: Record<string, SchemaNode>
  description?: string
}

export function schemaProblems(
  errors: readonly ErrorObject[],
  loaded: LoadedFile,
  prefix: readonly PathSegment[] = [],
): ConfigProblem[] {
  const kept = withoutExplainedRequired(pruneUnions(errors))
  const problems: ConfigProblem[] = []
  const seen = new Set<string>()
  for (const error of kept) {
    const path = [...prefix, ...toSegments(error.instancePath, loaded.data, prefix)]
    const { message, key } = describe(error)
    const at = key === undefined ? loaded.locate(path) : loaded.locateKey([...path, key])
    const fullPath = key === undefined ? path : [...path, key]
    const problem = {
      file: loaded.file,
      ...at,
      path: formatPath(fullPath),
      message: key === undefined ? withOrigin(message, path, loaded) : message,
    }
    const id = `${problem.path}\0${message}`
    if (seen.has(id)) continue
    seen.add(id)
    problems.push(problem)
  }
  return problems
}

/** Adds where a value came from when it was filled in from the environment. */
export function withOrigin(message: string, path: readonly PathSegment[], loaded: LoadedFile): string {
  const written = loaded.interpolated.get(toPointer(path))
  return written === undefined ? message : `${message} (interpolated from ${JSON.stringify(written)})`
}

/**
 * Validates a copy of `value` (the data at `prefix` in the file), so ajv never
 * writes into the user's data. A plain `${VAR}` that was re-typed to a number
 * or boolean where the schema wants a string is put back as the string it
 * was (in `value` itself), and the copy validated again.
 */
export function validateCopy<T>(
  validate: ValidateFunction,
  value: unknown,
  loaded: LoadedFile,
  prefix: readonly PathSegment[] = [],
): { value: T; errors: ErrorObject[] } {
  let copy = structuredClone(value)
  if (validate(copy)) return { value: copy as T, errors: [] }
  let restored = false
  const base = toPointer(prefix)
  for (const error of validate.errors ?? []) {
    const wanted = (error.params as { type?: string | string[] }).type
    if (error.keyword !== 'type' || !(wanted === 'string' || wanted?.includes('string'))) continue
    const text = loaded.retyped.get(base + error.instancePath)
    if (text === undefined || error.instancePath === '') continue
    const segments = toSegments(error.instancePath, value, [])
    const parent = segments
      .slice(0, -1)
      .reduce<unknown>((node, s) => (node as Record<string | number, unknown>)[s], value)
    ;(parent as Record<string | number, unknown>)[segments[segments.length - 1]] = text
    restored = true
  }
  if (!restored) return { value: copy as T, errors: [...(validate.errors ?? [])] }
  copy = structuredClone(value)
  return { value: copy as T, errors: validate(copy) ? [] : [...(validate.errors ?? [])] }
}

/**
 * The top-level items (a listener, a route, a service, a plugin's settings,
 * `global`, ...) that failed the schema. Cross-reference checks skip them
 * rather than trip over their shape, so the other items are still checked
 * and every problem in the file is reported in one go.
 */
export function invalidItems(errors: readonly ErrorObject[], data: unknown): Set<string> {
  const items = new Set<string>()
  for (const error of errors) {
    // An unknown key outside a union leaves the known ones intact: the item can still be checked.
    if (error.keyword === 'additionalProperties' && !error.schemaPath.includes('/anyOf/')) continue
    const segments = toSegments(error.instancePath, data, [])
    if (segments.length === 0) {
      if (error.keyword === 'type') items.add('(root)')
      continue
    }
    const depth = ['listeners', 'routes', 'services', 'plugins'].includes(String(segments[0])) ? 2 : 1
    items.add(formatPath(segments.slice(0, depth)))
  }
  return items
}

function describe(error: ErrorObject): { message: string; key?: string } {
  const p = error.params as Record<string, unknown>
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String(p.additionalProperty)
      return { key, message: `unknown key ${JSON.stringify(key)}${didYouMean(key, allowedKeys(error))}` }
    }
    case 'required':
      return { message: `missing required key ${JSON.stringify(p.missingProperty)}` }
    case 'type': {
      const pattern = (error.parentSchema as SchemaNode | undefined)?.pattern
      if (pattern === DURATION_PATTERN && typeof error.data === 'number')
        return {
          message: `expected ${patternName(pattern)}, got ${error.data}; write the unit, like ${error.data}s or ${error.data}ms`,
        }
      const expected = pattern === undefined ? typeName(p.type as string | string[]) : patternName(pattern)
      return { message: `expected ${expected}, got ${describeValue(error.data)}` }
    }
    case 'pattern':
      return { message: `expected ${patternName(String(p.pattern))}, got ${describeValue(error.data)}` }
    case 'const':
      return { message: `expected ${JSON.stringify(p.allowedValue)}, got ${describeValue(error.data)}` }
    case 'anyOf': {
      const branches = (error.schema as SchemaNode[]) ?? []
      return {
        message: `expected ${orList(branches.map(describeSchema))}, got ${describeValue(error.data)}${unionHint(branches, error.data)}`,
      }
    }
    case 'minItems':
      return {
        message: `expected at least ${p.limit} item${p.limit === 1 ? '' : 's'}, got ${describeValue(error.data)}`,
      }
    case 'minimum':
    case 'maximum':
      return { message: `expected a number ${p.comparison} ${p.limit}, got ${describeValue(error.data)}` }
    default:
      return { message: error.message ?? error.keyword }
  }
}

function allowedKeys(error: ErrorObject): string[] {
  return Object.keys((error.parentSchema as SchemaNode | undefined)?.properties ?? {})
}

/** A did-you-mean for a value no branch of a union took: a near constant, or a near key. */
function unionHint(branches: readonly SchemaNode[], data: unknown): string {
  const all = branches.flatMap(flattenUnion)
  if (typeof data === 'string') {
    const consts = all.filter((b) => typeof b.const === 'string').map((b) => String(b.const))
    return didYouMean(data, consts)
  }
  if (isPlainObject(data)) {
    const keys = all.flatMap((b) => Object.keys(b.properties ?? {}))
    const unknown = Object.keys(data).find((k) => !keys.includes(k))
    if (unknown !== undefined)
      return ` with unknown key ${JSON.stringify(unknown)}${didYouMean(unknown, keys)}`
  }
  return ''
}

function flattenUnion(schema: SchemaNode): SchemaNode[] {
  return schema.anyOf ? schema.anyOf.flatMap(flattenUnion) : [schema]
}

/** What a schema accepts, in words: `"stdout"`, `a string`, `{url, weight}`. */
function describeSchema(schema: SchemaNode): string {
  if (schema.anyOf) return orList(schema.anyOf.map(describeSchema))
  if (schema.const !== undefined) return JSON.stringify(schema.const)
  if (schema.pattern === DURATION_PATTERN || schema.pattern === SIZE_PATTERN)
    return patternName(schema.pattern)
  if (schema.type === 'object') {
    const keys = Object.keys(schema.properties ?? {})
    return keys.length > 0 ? `{${keys.join(', ')}}` : 'a map'
  }
  if (schema.type === undefined) return 'any value'
  return typeName(schema.type)
}

function typeName(type: string | string[]): string {
  if (Array.isArray(type)) return orList(type.map(typeName))
  const names: Record<string, string> = {
    string: 'a string',
    integer: 'an integer',
    number: 'a number',
    boolean: 'true or false',
    array: 'a list',
    object: 'a map',
    null: 'null',
  }
  return names[type] ?? type
}

function patternName(pattern: string): string {
  if (pattern === DURATION_PATTERN) return 'a duration like 250ms, 30s, 5m'
  if (pattern === SIZE_PATTERN) return 'a size like 64kb, 1mb'
  return `a string matching ${pattern}`
}

function orList(items: readonly string[]): string {
  const unique = [...new Set(items)]
  return unique.length <= 1
    ? (unique[0] ?? 'nothing')
    : `${unique.slice(0, -1).join(', ')} or ${unique.at(-1)}`
}

/**
 * For each failed anyOf, keep the errors of the branch the value was meant
 * for: the only one its type fits, else the only one sharing its keys. If no
 * branch stands out, keep just the anyOf ("expected X or Y").
 */
function pruneUnions(errors: readonly ErrorObject[]): ErrorObject[] {
  const dropped = new Set<ErrorObject>()
  // Innermost unions first, so an outer union sees its inner one already pruned.
  const unions = errors
    .filter((e) => e.keyword === 'anyOf')
    .sort(
      (a, b) => b.schemaPath.length - a.schemaPath.length || b.instancePath.length - a.instancePath.length,
    )
  for (const union of unions) {
    const base = `${union.schemaPath}/`
    const byBranch = new Map<number, ErrorObject[]>()
    for (const e of errors) {
      // One schema path serves every item of a list: only this value's errors belong to this union.
      const sameValue =
        e.instancePath === union.instancePath || e.instancePath.startsWith(`${union.instancePath}/`)
      if (e === union || dropped.has(e) || !sameValue || !e.schemaPath.startsWith(base)) continue
      const branch = Number.parseInt(e.schemaPath.slice(base.length), 10)
      byBranch.set(branch, [...(byBranch.get(branch) ?? []), e])
    }
    const fitting = [...byBranch.keys()].filter((branch) =>
      (byBranch.get(branch) ?? []).every(
        (e) => !(e.instancePath === union.instancePath && (e.keyword === 'type' || e.keyword === 'const')),
      ),
    )
    const chosen =
      fitting.length === 1 ? fitting[0] : sharingKeys(fitting, union.schema as SchemaNode[], union.data)
    for (const [branch, list] of byBranch) if (branch !== chosen) for (const e of list) dropped.add(e)
    if (chosen !== undefined) dropped.add(union)
  }
  return errors.filter((e) => !dropped.has(e))
}

/** The one branch whose keys the value uses most, if there is exactly one. */
function sharingKeys(branches: number[], schemas: readonly SchemaNode[], data: unknown): number | undefined {
  if (!isPlainObject(data) || !Array.isArray(schemas)) return undefined
  const scores = branches.map((branch) => ({
    branch,
    score: Object.keys(data).filter((k) => k in (schemas[branch]?.properties ?? {})).length,
  }))
  const best = Math.max(0, ...scores.map((s) => s.score))
  const top = scores.filter((s) => s.score === best)
  return best > 0 && top.length === 1 ? top[0].branch : undefined
}

/** "missing key name" says nothing new beside "unknown key nme; did you mean name?". */
function withoutExplainedRequired(errors: ErrorObject[]): ErrorObject[] {
  const guessed = new Set<string>()
  for (const e of errors) {
    if (e.keyword !== 'additionalProperties') continue
    const guess = closest(
      String((e.params as { additionalProperty: string }).additionalProperty),
      allowedKeys(e),
    )
    if (guess !== undefined) guessed.add(`${e.instancePath}\0${guess}`)
  }
  return errors.filter(
    (e) =>
      e.keyword !== 'required' ||
      !guessed.has(`${e.instancePath}\0${(e.params as { missingProperty: string }).missingProperty}`),
  )
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

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function describeValue(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list'
  if (typeof value === 'object') return 'a map'
  return JSON.stringify(value)
}
