/**
 * `gatehouse validate` as users run it: the real bin/gatehouse.js in a child
 * process (the same Node as this test), its exit code, stdout and stderr.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = join(ROOT, 'bin', 'gatehouse.js')
const CONFIGS = join(ROOT, 'test', 'config')

interface Run {
  code: number
  stdout: string
  stderr: string
}

/** Runs the CLI from test/config, so files are named as the golden files name them. */
function gatehouse(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: CONFIGS, env: { PATH: process.env.PATH ?? '', ...env }, timeout: 20_000 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') reject(error)
        else resolve({ code: error ? Number(error.code) : 0, stdout, stderr })
      },
    )
  })
}

describe('gatehouse validate', () => {
  it('exits 0 with one ok line for a valid file', async () => {
    const run = await gatehouse(['validate', '-c', 'valid/issue-example.yaml'])
    assert.equal(run.code, 0, run.stderr)
    assert.equal(run.stdout, 'valid/issue-example.yaml: ok (1 listener(s), 2 service(s), 2 route(s))\n')
    assert.equal(run.stderr, '')
  })

  // biome-ignore lint/suspicious/noTemplateCurlyInString: the name of the syntax
  it('reads ${VAR} from its environment', async () => {
    const env = {
      PORT: '8080',
      USERS_HOST: 'users.internal',
      USERS_PORT: '9001',
      PRESERVE_HOST: 'true',
      BUILD: '42',
    }
    const run = await gatehouse(['validate', '--config', 'valid/interpolation.yaml'], env)
    assert.equal(run.code, 0, run.stderr)
    assert.match(
      run.stdout,
      /^valid\/interpolation\.yaml: ok \(1 listener\(s\), 1 service\(s\), 2 route\(s\)\)\n$/,
    )
  })

  it('exits 1 and prints every problem with file:line:column on stderr', async () => {
    const run = await gatehouse(['validate', '-c', 'invalid/many-problems.yaml'])
    assert.equal(run.code, 1)
    assert.equal(run.stdout, '')
    const lines = run.stderr.trimEnd().split('\n')
    assert.equal(lines[0], '13 problems in configuration:')
    for (const line of lines.slice(1)) assert.match(line, /^ {2}invalid\/many-problems\.yaml:\d+:\d+ \S+: ./)
    // The same text the golden file pins for the library.
    assert.equal(run.stderr, readFileSync(join(CONFIGS, 'invalid', 'many-problems.error.txt'), 'utf8'))
  })

  it('exits 1 for a YAML syntax error, at its line and column', async () => {
    const run = await gatehouse(['validate', '-c', 'invalid/yaml-syntax.yaml'])
    assert.equal(run.code, 1)
    assert.match(
      run.stderr,
      /^1 problem in configuration:\n {2}invalid\/yaml-syntax\.yaml:4:1 syntax error: /,
    )
  })

  it('exits 1 for a file that cannot be read', async () => {
    const run = await gatehouse(['validate', '-c', 'invalid/no-such-file.yaml'])
    assert.equal(run.code, 1)
    assert.equal(
      run.stderr,
      '1 problem in configuration:\n  invalid/no-such-file.yaml:1:1 cannot read file (ENOENT)\n',
    )
  })

  it('exits 2 without -c, and for an unknown flag', async () => {
    const missing = await gatehouse(['validate'])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /give the config file with -c FILE/)
    const unknown = await gatehouse(['validate', '-c', 'valid/minimal.yaml', '--strict'])
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /Unknown option '--strict'/)
  })
})
