/**
 * `npm run bench`: the Gatehouse-only part of ../shared/bench/run.sh, i.e.
 * Gatehouse beside `direct` (wrk straight at the upstream, the ceiling) and
 * `undici-raw` (the "ideal Node" proxy), in one run, one round by default.
 * Extra arguments go to the harness (`npm run bench -- --scenario tls`).
 * Quote ratios, not absolute numbers: the machine is shared.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const harness = resolve(root, '../shared/bench/run.sh')
if (!existsSync(harness)) {
  process.stderr.write(
    `bench: ${harness} not found; the benchmark harness lives in ../shared/bench beside the project\n`,
  )
  process.exit(2)
}
const args = process.argv.slice(2)
const scenarioAt = args.indexOf('--scenario')
const scenario = scenarioAt === -1 ? 'proxy' : args[scenarioAt + 1]
const config = resolve(
  root,
  'bench',
  scenario === 'tls' || scenario === 'h2' ? 'proxy-tls.yaml' : 'proxy.yaml',
)
const gatehouse = `gatehouse=exec node ${resolve(root, 'bin/gatehouse.js')} start -c ${config}`
const only = scenario === 'proxy' ? 'direct,undici-raw,node-origin' : 'undici-raw'
const result = spawnSync('bash', [harness, '--only', only, '--contender', gatehouse, ...args], {
  stdio: 'inherit',
  env: { ROUNDS: '1', ...process.env },
})
process.exit(result.status ?? 1)
