/**
 * `npm run schema`: writes schema/gatehouse.schema.json and
 * docs/configuration.md from the schemas (scripts/schema-docs.ts renders
 * them). test/config/schema-published.test.ts fails while either is stale.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { builtinPlugins } from '../src/plugins/index.ts'
import { configurationDoc, DOC_FILE, SCHEMA_FILE, schemaText } from './schema-docs.ts'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const plugins = builtinPlugins()
for (const [file, text] of [
  [SCHEMA_FILE, schemaText(plugins)],
  [DOC_FILE, configurationDoc(plugins)],
] as const) {
  mkdirSync(dirname(join(root, file)), { recursive: true })
  writeFileSync(join(root, file), text)
  process.stdout.write(`wrote ${file}\n`)
}
