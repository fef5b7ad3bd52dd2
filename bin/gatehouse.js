#!/usr/bin/env node
// Plain JavaScript that any Node can parse (no imports, no top-level await
// before the check), so an old Node gets a clear answer and exit code 4
// instead of a syntax error. The program itself is TypeScript run by Node's
// type stripping (src/main.ts).

// Keep in step with "engines" in package.json (test/integration/cli.test.ts checks).
const MIN_MAJOR = 24
const RECOMMENDED = 26
const EXIT_NODE_TOO_OLD = 4
// After the CLI is done, a handle left open must not keep a stopped gateway alive.
const EXIT_AFTER_MS = 2000

const major = Number(process.versions.node.split('.')[0])
if (major < MIN_MAJOR) {
  process.stderr.write(
    `gatehouse: Node.js ${process.versions.node} is too old. Gatehouse needs Node.js ${MIN_MAJOR} or newer ` +
      `and is built and tested on Node.js ${RECOMMENDED} (Active LTS).\n` +
      `Run it through npm (npm start, npx gatehouse), which uses the Node ${RECOMMENDED} pinned in package.json, ` +
      `or install Node.js ${RECOMMENDED}.\n`,
  )
  process.exit(EXIT_NODE_TOO_OLD)
}

/*
 * Memory (docs/performance.md, "Peak memory"): a serving command runs Node
 * with a young generation capped at 4 MiB per semi-space (V8's default lets
 * it grow to 16 under load: ~30 MiB more RSS, no throughput measured for it)
 * and one malloc arena per core (glibc's default, 8 per core, kept ~10 MiB of
 * freed memory). Both must be set when the process starts, so the process
 * replaces itself once, keeping its PID, with process.execve. Flags or
 * MALLOC_ARENA_MAX given by the operator win; GATEHOUSE_NODE_TUNING=off skips
 * it all.
 */
const SEMI_SPACE_MB = 4
const SERVING_COMMANDS = ['start', 'demo']
if (
  SERVING_COMMANDS.includes(process.argv[2]) &&
  process.env.GATEHOUSE_NODE_TUNING !== 'off' &&
  typeof process.execve === 'function'
) {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  const flags = given.some((flag) => flag.startsWith('--max-semi-space-size'))
    ? []
    : [`--max-semi-space-size=${SEMI_SPACE_MB}`]
  const env = { ...process.env }
  if (!env.MALLOC_ARENA_MAX) env.MALLOC_ARENA_MAX = String((await import('node:os')).availableParallelism())
  if (flags.length > 0 || env.MALLOC_ARENA_MAX !== process.env.MALLOC_ARENA_MAX) {
    const args = [...flags, ...process.execArgv, process.argv[1], ...process.argv.slice(2)]
    process.execve(process.execPath, [process.execPath, ...args], env)
  }
}
// Node strips the TypeScript types once and keeps the result (and V8's code
// cache) here: later starts skip the stripping, which saves ~25 MiB of RSS and
// start time. A folder that cannot be written just means no cache.
;(await import('node:module')).enableCompileCache?.(
  new URL('../node_modules/.cache/gatehouse-compile', import.meta.url).pathname,
)

import('../src/main.ts')
  .then(({ main }) => main(process.argv.slice(2), process.env))
  .then((code) => {
    process.exitCode = code
    setTimeout(() => {
      process.stderr.write(`gatehouse: still busy ${EXIT_AFTER_MS} ms after stopping; exiting anyway\n`)
      process.exit(code)
    }, EXIT_AFTER_MS).unref()
  })
