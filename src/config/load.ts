/**
 * File -> plain data, keeping where every value came from. JSON is read with
 * the YAML parser (JSON is YAML 1.2), so both kinds report line and column.
 * `${VAR}` and `${VAR:-default}` are filled in from the environment given;
 * `$${` writes a literal `${`. A plain scalar that is only an interpolation
 * is re-typed (`port: ${PORT}` gives a number); a quoted one stays a string.
 */
import { readFile } from 'node:fs/promises'
import {
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  parse as parseYaml,
  Scalar,
  visit,
  type YAMLError,
} from 'yaml'
import { type ConfigProblem, formatPath, type PathSegment } from './problems.ts'

export interface LoadedFile {
  file: string
  data: unknown
  /** Line and column of the value at a config path (the nearest existing parent if the path does not exist). */
  locate(path: readonly PathSegment[]): { line: number; column: number }
  /** Line and column of the key at a path (for unknown-key errors), else of the value. */
  locateKey(path: readonly PathSegment[]): { line: number; column: number }
  /** Values that held a `${...}`, by JSON pointer: the text as written, to show in messages. */
  interpolated: ReadonlyMap<string, string>
  /**
   * Values re-typed from a plain `${VAR}` to a number or boolean, by JSON
   * pointer: the string they were, put back where the schema wants a string
   * (`password: ${SECRET}` must not fail when the secret happens to be digits).
   */
  retyped: ReadonlyMap<string, string>
}

export type Env = Readonly<Record<string, string | undefined>>

export async function loadFile(
  file: string,
  env: Env,
): Promise<{ loaded?: LoadedFile; problems: ConfigProblem[] }> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error)
    return { problems: [{ file, line: 1, column: 1, path: '', message: `cannot read file (${reason})` }] }
  }
  return parseText(file, text, env)
}

/** A JSON pointer (RFC 6901), the form ajv reports instance paths in. */
export function toPointer(path: readonly PathSegment[]): string {
  return path.map((s) => `/${String(s).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('')
}

export function parseText(
  file: string,
  text: string,
  env: Env,
): { loaded?: LoadedFile; problems: ConfigProblem[] } {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset)
    return { line, column: col }
  }
  const problems: ConfigProblem[] = syntaxErrors(doc.errors, doc.contents).map((error) => ({
    file,
    ...at(error.offset),
    path: '',
    message: error.message,
  }))
  if (problems.length > 0) return { problems }

  const interpolated = new Map<string, string>()
  const retyped = new Map<string, string>()
  interpolate(doc.contents, [], env, {
    problem: (node, path, message) =>
      problems.push({ file, ...at(node.range?.[0] ?? 0), path: formatPath(path), message }),
    interpolated: (path, written) => interpolated.set(toPointer(path), written),
    retyped: (path, value) => retyped.set(toPointer(path), value),
  })
  if (problems.length > 0) return { problems }

  const nodeAt = (path: readonly PathSegment[]): { node: Node | null; key: Node | null } => {
    let node: unknown = doc.contents
    let key: Node | null = null
    for (const segment of path) {
      if (isMap(node)) {
        const pair = node.items.find(
          (item) => isScalar(item.key) && String(item.key.value) === String(segment),
        )
        if (!pair) return { node: node as Node, key: null }
        key = pair.key as Node
        // `key:` with nothing after it has no value node: point at the key.
        node = pair.value ?? pair.key
      } else if (isSeq(node) && typeof segment === 'number' && node.items[segment]) {
        key = null
        node = node.items[segment]
      } else {
        return { node: (node as Node) ?? null, key: null }
      }
    }
    return { node: (node as Node) ?? null, key }
  }
  const position = (node: Node | null) => at(node?.range?.[0] ?? 0)

  return {
    problems,
    loaded: {
      file,
      data: doc.toJS({ maxAliasCount: 100 }) ?? {},
      locate: (path) => position(nodeAt(path).node),
      locateKey: (path) => {
        const found = nodeAt(path)
        return position(found.key ?? found.node)
      },
      interpolated,
      retyped,
    },
  }
}

/**
 * Every duplicate key (each is its own mistake), but only the first other
 * syntax error: the parser's later complaints are mostly echoes of it.
 */
function syntaxErrors(
  errors: readonly YAMLError[],
  contents: unknown,
): { offset: number; message: string }[] {
  const duplicates = errors.filter((e) => e.code === 'DUPLICATE_KEY')
  const other = errors.find((e) => e.code !== 'DUPLICATE_KEY')
  const keyAt = new Map<number, string>()
  if (duplicates.length > 0)
    visit(contents as Node, {
      Pair(_, pair) {
        if (isScalar(pair.key) && pair.key.range) keyAt.set(pair.key.range[0], String(pair.key.value))
      },
    })
  const found = duplicates.map((e) => {
    const key = keyAt.get(e.pos[0])
    return {
      offset: e.pos[0],
      message: key === undefined ? 'duplicate key' : `duplicate key ${JSON.stringify(key)}`,
    }
  })
  if (other) found.push({ offset: other.pos[0], message: `syntax error: ${other.message.split('\n')[0]}` })
  return found.sort((a, b) => a.offset - b.offset)
}

/** `$${` (a literal), `${NAME}` / `${NAME:-default}`, or any other `${`, which is a mistake. */
const INTERPOLATION = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?/g

interface InterpolationSink {
  problem(node: Node, path: PathSegment[], message: string): void
  interpolated(path: PathSegment[], written: string): void
  retyped(path: PathSegment[], value: string): void
}

function interpolate(node: unknown, path: PathSegment[], env: Env, sink: InterpolationSink): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '?'
      if (key.includes('${'))
        sink.problem(pair.key as Node, [...path, key], `keys are not interpolated; only values take \${VAR}`)
      interpolate(pair.value, [...path, key], env, sink)
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, index) => {
      interpolate(item, [...path, index], env, sink)
    })
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('${')) {
    const original = node.value
    let whole = false
    let substituted = false
    const value = original.replace(
      INTERPOLATION,
      (match, name: string | undefined, fallback: string | undefined) => {
        if (match === '$${') return '${'
        if (name === undefined) {
          sink.problem(
            node,
            path,
            `cannot interpolate ${JSON.stringify(match)}: write \${NAME} or \${NAME:-default} (NAME of letters, digits and _), or $\${ for a literal \${`,
          )
          return match
        }
        substituted = true
        whole = match === original
        const found = env[name]
        if (found !== undefined && found !== '') return found
        if (fallback !== undefined) return fallback
        sink.problem(
          node,
          path,
          `environment variable ${name} is ${found === '' ? 'empty' : 'not set'} (write \${${name}:-default} to give a default)`,
        )
        return ''
      },
    )
    if (substituted) sink.interpolated(path, original)
    const typed = whole && node.type === Scalar.PLAIN ? retype(value) : value
    if (typed !== value) sink.retyped(path, value)
    node.value = typed
  }
}

/** `port: ${PORT}` should mean the number, as if the value had been written in place. */
function retype(value: string): unknown {
  try {
    const typed = parseYaml(value)
    return typeof typed === 'number' || typeof typed === 'boolean' ? typed : value
  } catch {
    return value
  }
}
