#!/usr/bin/env node
// Plain JavaScript that any Node can parse, so an old Node gets a clear answer
// instead of a syntax error. The program itself is TypeScript run by Node's
// type stripping (src/main.ts).
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 24 || (major === 24 && minor < 0)) {
  process.stderr.write(
    `gatehouse: Node.js ${process.versions.node} is too old. Gatehouse needs Node.js 24 or newer and is built and tested on Node.js 26 (Active LTS).\n` +
      'Run it through npm (npm start / npx gatehouse), which uses the Node 26 pinned in package.json, or install Node 26.\n',
  )
  process.exit(4)
}
const { main } = await import('../src/main.ts')
process.exitCode = await main(process.argv.slice(2), process.env)
