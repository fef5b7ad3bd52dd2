/**
 * file -> load (line numbers kept) -> schema -> normalize + cross-references
 * -> a frozen Config, or every problem at once.
 */
import { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import type { PluginDefinition } from '../pipeline/plugin.ts'
import { type Env, type LoadedFile, loadFile, parseText } from './load.ts'
import { normalize } from './normalize.ts'
import { ConfigError, type ConfigProblem } from './problems.ts'
import { GatehouseConfig, type RawConfig } from './schema.ts'
import { invalidItems, schemaProblems, validateCopy } from './schema-errors.ts'
import type { Config } from './types.ts'

export { ConfigError, type ConfigProblem } from './problems.ts'
export type { Config } from './types.ts'

export interface ConfigSource {
  plugins: ReadonlyMap<string, PluginDefinition<never>>
  env: Env
}

export function createAjv(): Ajv {
  const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true, verbose: true })
  addFormats.default(ajv)
  return ajv
}

/** Reads and checks a config file; throws ConfigError listing every problem. */
export async function loadConfig(file: string, source: ConfigSource): Promise<Config> {
  const { loaded, problems } = await loadFile(file, source.env)
  return check(loaded, problems, source)
}

/** As loadConfig, from text (tests and the admin API). */
export function loadConfigText(file: string, text: string, source: ConfigSource): Config {
  const { loaded, problems } = parseText(file, text, source.env)
  return check(loaded, problems, source)
}

function check(loaded: LoadedFile | undefined, problems: ConfigProblem[], source: ConfigSource): Config {
  if (!loaded) throw new ConfigError(problems)
  const ajv = createAjv()
  const validate = ajv.compile<RawConfig>(GatehouseConfig)
  // The schema pass must not write defaults into the data: normalize fills them, explicitly.
  const { errors } = validateCopy(validate, loaded.data, loaded)
  const found = schemaProblems(errors, loaded)
  const invalid = invalidItems(errors, loaded.data)
  // Items that failed the schema are skipped, not given up on: the rest is still
  // cross-checked, so one run lists every problem in the file.
  if (!invalid.has('(root)')) {
    const result = normalize(loaded.data as RawConfig, loaded, { plugins: source.plugins, ajv, invalid })
    if (result.config && found.length === 0) return result.config
    found.push(...result.problems)
  }
  throw new ConfigError(found)
}
