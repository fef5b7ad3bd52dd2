/**
 * The published schema and the configuration reference are generated from
 * the schemas (`npm run schema`); these tests fail while the committed files
 * are stale, and while any field lacks the description the docs are made of.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import {
  configurationDoc,
  DOC_FILE,
  fields,
  publishedSchema,
  SCHEMA_FILE,
  type SchemaNode,
  schemaText,
  splitDefault,
  typeText,
} from '../../scripts/schema-docs.ts'
import { createAjv } from '../../src/config/index.ts'
import { parseText } from '../../src/config/load.ts'
import { GatehouseConfig } from '../../src/config/schema.ts'
import { validateCopy } from '../../src/config/schema-errors.ts'
import { builtinPlugins } from '../../src/plugins/index.ts'
import { GOLDEN_ENV } from './golden-env.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const plugins = builtinPlugins()

describe('published schema and configuration reference', () => {
  for (const [file, render] of [
    [SCHEMA_FILE, schemaText],
    [DOC_FILE, configurationDoc],
  ] as const) {
    it(`${file} is up to date`, () => {
      let committed = ''
      try {
        committed = readFileSync(join(ROOT, file), 'utf8')
      } catch {}
      assert.ok(
        committed === render(plugins),
        `${file} is stale (or missing): run \`npm run schema\` and commit the result`,
      )
    })
  }

  it('gives every config field a description', () => {
    const missing = fields(GatehouseConfig as unknown as SchemaNode)
      .filter((f) => !f.schema.description?.trim())
      .map((f) => f.path)
    for (const [name, plugin] of plugins) {
      const schema = plugin.schema as unknown as SchemaNode
      if (!schema.description?.trim()) missing.push(`plugin ${name} (its schema's own description)`)
      for (const f of fields(schema))
        if (!f.schema.description?.trim()) missing.push(`plugins.${name}.${f.path}`)
    }
    assert.deepEqual(missing, [], 'fields without a description (add one in the schema)')
  })

  it('documents every field, plugins included', () => {
    const doc = configurationDoc(plugins)
    for (const f of fields(GatehouseConfig as unknown as SchemaNode))
      assert.ok(doc.includes(`| \`${f.path}\` |`), f.path)
    for (const [name, plugin] of plugins) {
      assert.ok(doc.includes(`### ${name}\n`), name)
      for (const f of fields(plugin.schema as unknown as SchemaNode))
        assert.ok(doc.includes(`| \`plugins.${name}.${f.path}\` |`), `${name} ${f.path}`)
    }
  })

  it('is a schema editors can use: valid golden files pass it, broken ones do not', () => {
    const schema = publishedSchema(plugins)
    assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#')
    assert.equal(typeof schema.$id, 'string')
    const validate = createAjv().compile(schema)
    // As the loader does it: a ${VAR} re-typed to a number goes back to its string where one is wanted.
    const check = (file: string) => {
      const { loaded } = parseText(file, readFileSync(file, 'utf8'), GOLDEN_ENV)
      assert.ok(loaded, file)
      return validateCopy(validate, loaded.data, loaded).errors
    }
    const valid = join(ROOT, 'test', 'config', 'valid')
    const sources = readdirSync(valid).filter((f) => f.endsWith('.yaml') || f.endsWith('.input.json'))
    assert.ok(sources.length >= 4)
    for (const file of sources) assert.deepEqual(check(join(valid, file)), [], file)
    assert.notDeepEqual(check(join(ROOT, 'test', 'config', 'invalid', 'wrong-type.yaml')), [])
    // Plugin settings are checked by the published schema too.
    assert.equal(
      validate({ listeners: [{ port: 1 }], routes: [], plugins: { 'security-headers': { hsts: 5 } } }),
      false,
    )
  })
})

describe('reading defaults out of descriptions', () => {
  it('takes the default sentence out when it stands alone', () => {
    assert.deepEqual(splitDefault('Address to bind. Default 0.0.0.0.'), {
      text: 'Address to bind.',
      default: '0.0.0.0',
    })
    assert.deepEqual(splitDefault('Oldest TLS version. Default TLSv1.2.'), {
      text: 'Oldest TLS version.',
      default: 'TLSv1.2',
    })
    assert.deepEqual(splitDefault('Seconds. Default 15552000 (180 days).'), {
      text: 'Seconds.',
      default: '15552000 (180 days)',
    })
  })

  it('keeps the description whole when the default is part of a sentence, and finds none when absent', () => {
    assert.deepEqual(splitDefault('Relative share. Default 1; 0 disables.'), {
      text: 'Relative share. Default 1; 0 disables.',
      default: '1',
    })
    assert.deepEqual(splitDefault('Path of the PEM private key.'), {
      text: 'Path of the PEM private key.',
      default: null,
    })
    assert.deepEqual(splitDefault('Defaults vary.'), { text: 'Defaults vary.', default: null })
  })

  it('names types the way the docs explain them', () => {
    const listener = (GatehouseConfig as unknown as SchemaNode).properties?.listeners as SchemaNode
    const byPath = new Map(fields(listener, 'listeners').map((f) => [f.path, f]))
    assert.equal(typeText(byPath.get('listeners[].port')!.schema), 'integer 0-65535')
    assert.equal(typeText(byPath.get('listeners[].limits.headersTimeout')!.schema), 'duration')
    assert.equal(typeText(byPath.get('listeners[].limits.maxBodySize')!.schema), 'size')
    assert.equal(typeText(byPath.get('listeners[].tls.minVersion')!.schema), '"TLSv1.2" | "TLSv1.3"')
    assert.equal(byPath.get('listeners[].port')!.required, true)
  })
})
