/**
 * File -> plain data, keeping where every value came from. JSON is read with
 * the YAML parser (JSON is YAML 1.2), so both kinds report line and column.
 * `${VAR}` and `${VAR:-default}` are filled in from the environment given;
 * `$${` writes a literal `${`. A plain scalar that is only an interpolation
 * is re-typed (`port: ${PORT}` gives a number).
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
} from 'yaml'
import { type ConfigProblem, formatPath, type PathSegment } from './problems.ts'

export interface LoadedFile {
  file: string
  data: unknown
  /** Line and column of the value at a config path (the nearest existing parent if the path does not exist). */
  locate(path: readonly PathSegment[]): { line: number; column: number }
  /** Line and column of the key at a path (for unknown-key errors), else of the value. */
  locateKey(path: readonly PathSegment[]): { line: number; column: number }
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
    return {
      problems: [{ file, line: 1, column: 1, path: '(root)', message: `cannot read file (${reason})` }],
    }
  }
  return parseText(file, text, env)
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
  const problems: ConfigProblem[] = []
  for (const error of doc.errors) {
    problems.push({ file, ...at(error.pos[0]), path: '(root)', message: error.message.split('\n')[0] })
  }
  if (problems.length > 0) return { problems }

  interpolate(doc.contents, [], env, (node, path, message) =>
    problems.push({ file, ...at(node.range?.[0] ?? 0), path: formatPath(path), message }),
  )
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
        node = pair.value
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
    },
  }
}

const INTERPOLATION = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

function interpolate(
  node: unknown,
  path: PathSegment[],
  env: Env,
  report: (node: Node, path: PathSegment[], message: string) => void,
): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : '?'
      interpolate(pair.value, [...path, key], env, report)
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, index) => {
      interpolate(item, [...path, index], env, report)
    })
  } else if (isScalar(node) && typeof node.value === 'string' && node.value.includes('$')) {
    const original = node.value
    let whole = false
    const value = original.replace(
      INTERPOLATION,
      (match, name: string | undefined, fallback: string | undefined) => {
        if (match === '$${') return '${'
        whole = match === original
        const found = env[name as string]
        if (found !== undefined && found !== '') return found
        if (fallback !== undefined) return fallback
        report(
          node,
          path,
          `environment variable ${name} is not set (write \${${name}:-default} to give a default)`,
        )
        return ''
      },
    )
    node.value = whole && node.type === Scalar.PLAIN ? retype(value) : value
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
