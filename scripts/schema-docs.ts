// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the docs text shows ${VAR} syntax
/**
 * What `npm run schema` publishes, as pure functions of the schemas (so a
 * test can tell when the committed files are stale): the JSON Schema editors
 * use, and docs/configuration.md, every field with its type, default and
 * description. The descriptions in src/config/schema.ts and the plugin
 * schemas are the single source; nothing here is written by hand per field.
 */
import type { TSchema } from '@sinclair/typebox'
import { GatehouseConfig } from '../src/config/schema.ts'
import { DURATION_PATTERN, SIZE_PATTERN } from '../src/config/units.ts'
import type { PluginDefinition } from '../src/pipeline/plugin.ts'

export const SCHEMA_FILE = 'schema/gatehouse.schema.json'
export const DOC_FILE = 'docs/configuration.md'
export const SCHEMA_ID = 'urn:gatehouse:config'

/** The JSON Schema keywords this generator reads. */
export interface SchemaNode {
  type?: string
  const?: unknown
  anyOf?: SchemaNode[]
  pattern?: string
  minimum?: number
  maximum?: number
  minItems?: number
  items?: SchemaNode
  properties?: Record<string, SchemaNode>
  patternProperties?: Record<string, SchemaNode>
  required?: string[]
  description?: string
}

type Plugins = ReadonlyMap<string, PluginDefinition<never>>

/**
 * The published schema: GatehouseConfig, plus each built-in plugin's schema
 * under the top-level `plugins` map so editors complete and check those
 * settings too (the loader checks them in its second pass either way).
 */
export function publishedSchema(plugins: Plugins): Record<string, unknown> {
  const config = plain(GatehouseConfig) as Record<string, unknown> & {
    properties: Record<string, SchemaNode>
  }
  const named: Record<string, SchemaNode> = {}
  for (const [name, plugin] of sorted(plugins)) named[name] = plain(plugin.schema) as SchemaNode
  config.properties.plugins = { ...config.properties.plugins, properties: named }
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: SCHEMA_ID,
    title: 'Gatehouse configuration',
    ...config,
  }
}

export function schemaText(plugins: Plugins): string {
  return `${JSON.stringify(publishedSchema(plugins), null, 2)}\n`
}

/** A documented place in the config: `routes[].service`, `services.<name>.targets[].url`. */
export interface Field {
  path: string
  schema: SchemaNode
  required: boolean
}

/**
 * Every property of a schema, depth first: into objects, list items, map
 * values and the object branches of unions, which share their parent's path.
 */
export function fields(schema: SchemaNode, path = ''): Field[] {
  const out: Field[] = []
  const visit = (node: SchemaNode, at: string) => {
    for (const branch of node.anyOf ?? []) visit(branch, at)
    if (node.items) visit(node.items, `${at}[]`)
    for (const value of Object.values(node.patternProperties ?? {})) visit(value, `${at}.<name>`)
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      const childPath = at === '' ? key : `${at}.${key}`
      out.push({ path: childPath, schema: child, required: node.required?.includes(key) ?? false })
      visit(child, childPath)
    }
  }
  visit(schema, path)
  return out
}

/** `integer 1-65535`, `duration`, `"prefix" | "exact"`, `list of string`. */
export function typeText(schema: SchemaNode): string {
  if (schema.const !== undefined) return JSON.stringify(schema.const)
  if (schema.anyOf) {
    if (schema.anyOf.some((b) => b.pattern === SIZE_PATTERN)) return 'size'
    return [...new Set(schema.anyOf.map(typeText))].join(' | ')
  }
  if (schema.pattern === DURATION_PATTERN) return 'duration'
  if (schema.pattern === SIZE_PATTERN) return 'size'
  switch (schema.type) {
    case 'integer':
    case 'number': {
      const { minimum: min, maximum: max } = schema
      if (min !== undefined && max !== undefined) return `${schema.type} ${min}-${max}`
      if (min !== undefined) return `${schema.type} >= ${min}`
      return schema.type
    }
    case 'array':
      return schema.items ? `list of ${plural(typeText(schema.items))}` : 'list'
    case 'object':
      if (schema.patternProperties)
        return `map of ${plural(typeText(Object.values(schema.patternProperties)[0]))}`
      return schema.properties && Object.keys(schema.properties).length > 0 ? 'object' : 'map'
    case undefined:
      return 'any'
    default:
      return schema.type
  }
}

function plural(type: string): string {
  if (type.includes(' | ')) return `(${type})`
  return type === 'object' ? 'objects' : type
}

/**
 * The default stated in a description ("... Default 30s." / "Default 1; 0
 * disables."), and the description with that sentence taken out when it was
 * one on its own. A dot only ends it before a space or the end, so
 * `Default 0.0.0.0.` gives `0.0.0.0`.
 */
export function splitDefault(description: string): { text: string; default: string | null } {
  const match = /(^|\s)Default (.+?)(\.(?=\s|$)|;|$)/.exec(description)
  if (!match) return { text: description, default: null }
  const own = match[3] === '.'
  const text = own
    ? `${description.slice(0, match.index)}${description.slice(match.index + match[0].length)}`.trim()
    : description
  return { text, default: match[2] }
}

function row(field: Field, prefix: string): string {
  const description = field.schema.description ?? ''
  const { text, default: def } = splitDefault(description)
  const type = `${typeText(field.schema)}${field.required ? ', required' : ''}`
  const cells = [`\`${prefix}${field.path}\``, cell(type), cell(def ?? ''), cell(text)]
  return `| ${cells.join(' | ')} |`
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

const TABLE_HEAD = '| Field | Type | Default | Description |\n| --- | --- | --- | --- |'

export function configurationDoc(plugins: Plugins): string {
  const root = GatehouseConfig as unknown as SchemaNode
  const out: string[] = [
    '# Configuration reference',
    '',
    '<!-- Generated by `npm run schema` (scripts/gen-schema.ts) from src/config/schema.ts and the',
    '     plugin schemas. Do not edit by hand: change the descriptions there and run it again. -->',
    '',
    `${root.description} One YAML or JSON file, checked by`,
    '`gatehouse validate -c FILE`, which lists every problem with its file:line:column. Editors can',
    `check and complete it against [\`${SCHEMA_FILE}\`](../${SCHEMA_FILE}): put`,
    '`# yaml-language-server: $schema=./schema/gatehouse.schema.json` at the top of the file.',
    '',
    '- **Durations** are a number and a unit: `250ms`, `30s`, `1.5m`, `1h`.',
    '- **Sizes** are a whole number and a unit in powers of 1024 (`512b`, `64kb`, `1mb`, `1gb`), or a',
    '  plain number of bytes.',
    '- **Environment variables**: `${VAR}` is replaced by the value of `VAR`, `${VAR:-default}` by',
    '  the default when `VAR` is unset or empty; an unset `VAR` without a default is an error.',
    '  `$${` writes a literal `${`. A plain (unquoted) value that is only `${VAR}` is read as if',
    '  the value were written there, so `port: ${PORT}` is a number; a quoted one stays a string.',
    '  Where a string is expected, a value that looks like a number stays the string it was.',
    '  Inside `[...]` or `{...}` a `${VAR}` must be quoted (YAML reads `{` there as a map).',
    '  Only values are interpolated, not keys.',
    '- Relative file paths (certificates, CAs, the access log) are relative to the config file.',
    '- Paths below: `[]` is any item of a list, `<name>` any key of a map.',
    '',
    '## Top-level keys',
    '',
    TABLE_HEAD,
    ...fields(root)
      .filter((f) => !f.path.includes('.') && !f.path.includes('['))
      .map((f) => row(f, '')),
  ]
  for (const [key, schema] of Object.entries(root.properties ?? {})) {
    const nested = fields(schema, key)
    if (nested.length === 0) continue
    out.push('', `## ${key}`, '', schema.description ?? '', '', TABLE_HEAD, ...nested.map((f) => row(f, '')))
  }
  out.push(
    '',
    '## Built-in plugins',
    '',
    'A plugin is attached by name in a `plugins` list (`global.plugins`, `services.<name>.plugins`,',
    '`routes[].plugins`); its settings come from the top-level `plugins.<plugin>` map, or from',
    '`{name, config}` in the list for that place only. The most specific place wins.',
    '[docs/plugins.md](plugins.md) explains scopes and the order plugins run in.',
  )
  for (const [name, plugin] of sorted(plugins)) {
    const schema = plugin.schema as unknown as SchemaNode
    out.push('', `### ${name}`, '', schema.description ?? '', '', TABLE_HEAD)
    out.push(...fields(schema).map((f) => row(f, `plugins.${name}.`)))
  }
  return `${out.join('\n')}\n`
}

function sorted(plugins: Plugins): [string, PluginDefinition<never>][] {
  return [...plugins].sort(([a], [b]) => a.localeCompare(b))
}

/** A TypeBox schema as plain JSON (drops TypeBox's symbol-keyed markers). */
function plain(schema: TSchema): unknown {
  return JSON.parse(JSON.stringify(schema))
}
