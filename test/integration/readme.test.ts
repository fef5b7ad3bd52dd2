/**
 * The README's configuration example is examples/basic/gatehouse.yaml, which
 * examples.test.ts starts and exercises; this keeps the two from drifting.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { parse } from 'yaml'

const root = new URL('../../', import.meta.url)

describe('README', () => {
  it('shows examples/basic/gatehouse.yaml as its configuration example', () => {
    const readme = readFileSync(new URL('README.md', root), 'utf8')
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1])
    assert.equal(blocks.length, 1, 'the README has one YAML example')
    const example = readFileSync(new URL('examples/basic/gatehouse.yaml', root), 'utf8')
    assert.deepEqual(parse(blocks[0]), parse(example))
  })

  it('names the two commands of the quick start', () => {
    const readme = readFileSync(new URL('README.md', root), 'utf8')
    const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
      scripts: Record<string, string>
    }
    assert.match(readme, /npm start/)
    assert.match(readme, /npm test/)
    assert.equal(pkg.scripts.start, 'node bin/gatehouse.js demo')
    assert.match(pkg.scripts.test, /lint.*typecheck.*test:unit/)
  })
})
