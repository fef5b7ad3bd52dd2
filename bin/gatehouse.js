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

import('../src/main.ts')
  .then(({ main }) => main(process.argv.slice(2), process.env))
  .then((code) => {
    process.exitCode = code
    setTimeout(() => {
      process.stderr.write(`gatehouse: still busy ${EXIT_AFTER_MS} ms after stopping; exiting anyway\n`)
      process.exit(code)
    }, EXIT_AFTER_MS).unref()
  })
