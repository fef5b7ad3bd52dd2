import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { loadConfigText } from '../../config/index.ts'
import type { Config } from '../../config/types.ts'
import { builtinPlugins } from '../../plugins/index.ts'
import { Discovery } from './discovery.ts'

describe('Discovery', () => {
  let dir: string
  let discovery: Discovery
  let changes = 0

  const config = (path: string): Config =>
    loadConfigText(
      join(dir, 'gatehouse.yaml'),
      `
listeners: [{port: 8080}]
services:
  found: {discovery: {file: {path: ${path}}}}
  fixed: {targets: [http://127.0.0.1:9]}
routes: [{path: /, service: found}]
`,
      { plugins: builtinPlugins(), env: {} },
    )

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-discovery-'))
    await writeFile(join(dir, 'one.yaml'), '- http://127.0.0.1:1\n')
    await writeFile(join(dir, 'two.yaml'), '- http://127.0.0.1:2\n')
    discovery = new Discovery({
      logger: pino({ level: 'silent' }),
      env: {},
      onChange: () => {
        changes++
      },
    })
  })
  after(async () => {
    discovery.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('derives a config with the discovered targets, leaving the loaded one as it was', async () => {
    const loaded = config('one.yaml')
    assert.deepEqual(discovery.apply(loaded).services.found.targets, [])
    discovery.sync(loaded)
    await discovery.ready(10_000)
    assert.equal(changes, 1)
    const derived = discovery.apply(loaded)
    assert.deepEqual(
      derived.services.found.targets.map((t) => t.url),
      ['http://127.0.0.1:1'],
    )
    assert.equal(loaded.services.found.targets.length, 0)
    assert.equal(derived.services.fixed, loaded.services.fixed)
    assert.equal(derived.routes, loaded.routes)
    assert.ok(Object.isFrozen(derived) && Object.isFrozen(derived.services.found))
  })

  it('keeps a source whose settings did not change, with its result; restarts a changed one', async () => {
    const again = config('one.yaml')
    discovery.sync(again)
    assert.deepEqual(
      discovery.apply(again).services.found.targets.map((t) => t.url),
      ['http://127.0.0.1:1'],
    )
    const moved = config('two.yaml')
    // Before sync, the old source's list does not stand for other settings.
    assert.deepEqual(discovery.apply(moved).services.found.targets, [])
    discovery.sync(moved)
    await discovery.ready(10_000)
    assert.deepEqual(
      discovery.apply(moved).services.found.targets.map((t) => t.url),
      ['http://127.0.0.1:2'],
    )
    assert.equal(changes, 2)
  })
})
