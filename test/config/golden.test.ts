/**
 * Golden files pin the mapping from a config file to the normalized, frozen
 * Config (the truth the runtime shares), and from a broken file to the exact
 * ConfigError message a user sees:
 *
 *   valid/NAME.yaml   (or NAME.input.json)  ->  valid/NAME.json         the Config as JSON
 *   invalid/NAME.yaml (or NAME.input.json)  ->  invalid/NAME.error.txt  the formatted problems
 *
 * After an intended change, rewrite the expected files and review the diff:
 *
 *   UPDATE_GOLDEN=1 node --test test/config/golden.test.ts
 *
 * Paths in the output are relative to test/config (`invalid/foo.yaml:3:5`) and
 * PEM contents are replaced by a placeholder, so the files are the same on
 * every machine. Every file is loaded with the one fixed environment in
 * golden-env.ts.
 */
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { dirname, join, sep } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type Config, ConfigError, loadConfig } from '../../src/config/index.ts'
import { builtinPlugins } from '../../src/plugins/index.ts'
import { ensureFixtureCertificates } from './fixture-certs.ts'
import { GOLDEN_ENV } from './golden-env.ts'

ensureFixtureCertificates()

const HERE = dirname(fileURLToPath(import.meta.url))
const UPDATE = process.env.UPDATE_GOLDEN === '1'

const SOURCE = /^(.*)(\.yaml|\.input\.json)$/

/** Source files of a folder with the expected file each one maps to. */
function cases(folder: 'valid' | 'invalid'): { name: string; source: string; expected: string }[] {
  const suffix = folder === 'valid' ? '.json' : '.error.txt'
  return readdirSync(join(HERE, folder))
    .map((file) => SOURCE.exec(file))
    .filter((match) => match !== null)
    .map((match) => ({
      name: match[0],
      source: join(HERE, folder, match[0]),
      expected: join(HERE, folder, `${match[1]}${suffix}`),
    }))
}

/** Absolute paths under test/config become relative, so output is the same on every machine. */
function relative(text: string): string {
  return text
    .split(`${HERE}${sep}`)
    .join('')
    .split(JSON.stringify(`${HERE}${sep}`).slice(1, -1))
    .join('')
}

const PEM_FIELDS = new Set(['certPem', 'keyPem', 'ca'])

function serialize(config: Config): string {
  const json = JSON.stringify(
    config,
    (key, value) => (PEM_FIELDS.has(key) && typeof value === 'string' ? '<PEM contents>' : value),
    2,
  )
  return `${relative(json)}\n`
}

function compare(actual: string, expectedFile: string): void {
  if (UPDATE) {
    writeFileSync(expectedFile, actual)
    return
  }
  assert.ok(
    existsSync(expectedFile),
    `${relative(expectedFile)} is missing; create it with UPDATE_GOLDEN=1 node --test test/config/golden.test.ts`,
  )
  assert.equal(actual, readFileSync(expectedFile, 'utf8'))
}

function isDeepFrozen(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true
  return Object.isFrozen(value) && Object.values(value).every(isDeepFrozen)
}

const source = { plugins: builtinPlugins(), env: GOLDEN_ENV }

describe('golden: valid configs -> normalized Config', () => {
  for (const { name, source: file, expected } of cases('valid')) {
    it(name, async () => {
      const config = await loadConfig(file, source)
      assert.ok(isDeepFrozen(config), 'the normalized Config is deeply frozen')
      compare(serialize(config), expected)
    })
  }
})

describe('golden: invalid configs -> ConfigError message', () => {
  for (const { name, source: file, expected } of cases('invalid')) {
    it(name, async () => {
      const error = await loadConfig(file, source).then(
        () => assert.fail(`${name} loaded, but it should be refused`),
        (caught: unknown) => caught,
      )
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
      for (const problem of error.problems) {
        assert.ok(problem.line >= 1 && problem.column >= 1, `${problem.message} has a line and column`)
      }
      compare(`${relative(error.message)}\n`, expected)
    })
  }
})

describe('golden: expected files', () => {
  it('each belongs to a source file', () => {
    for (const [folder, suffix] of [
      ['valid', '.json'],
      ['invalid', '.error.txt'],
    ] as const) {
      const expected = new Set(cases(folder).map((c) => c.expected))
      const orphans = readdirSync(join(HERE, folder))
        .filter((file) => file.endsWith(suffix) && !SOURCE.test(file))
        .map((file) => join(HERE, folder, file))
        .filter((file) => !expected.has(file))
      if (UPDATE) for (const file of orphans) unlinkSync(file)
      else assert.deepEqual(orphans.map(relative), [], 'expected files without a source; delete them')
    }
  })
})
