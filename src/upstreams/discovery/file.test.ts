import assert from 'node:assert/strict'
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { eventually } from '../../../test/helpers/eventually.ts'
import type { TargetConfig } from '../../config/types.ts'
import { FileSource, parseTargetFile } from './file.ts'

describe('parseTargetFile', () => {
  it('reads the forms of `targets`, in YAML or JSON', () => {
    const yaml = parseTargetFile(
      't.yaml',
      '- http://127.0.0.1:1\n- {url: "https://h:2", weight: 3, backup: true}\n',
      {},
    )
    assert.ok('targets' in yaml)
    assert.deepEqual(yaml.targets[1], {
      url: 'https://h:2',
      origin: 'https://h:2',
      weight: 3,
      backup: true,
      drain: false,
    })
    const json = parseTargetFile(
      't.json',
      '["http://127.0.0.1:1", {"url": "http://127.0.0.1:2", "drain": true}]',
      {},
    )
    assert.ok('targets' in json)
    assert.deepEqual(
      json.targets.map((t) => [t.url, t.drain]),
      [
        ['http://127.0.0.1:1', false],
        ['http://127.0.0.1:2', true],
      ],
    )
    const empty = parseTargetFile('t.yaml', '[]', {})
    assert.deepEqual(empty, { targets: [] })
  })

  it('reports every problem with its line and column', () => {
    const bad = parseTargetFile('t.yaml', '- http://127.0.0.1:1\n- ftp://h:21\n- http://h:1/path\n', {})
    assert.ok('problems' in bad)
    assert.deepEqual(
      bad.problems.map((p) => [p.line, p.path]),
      [
        [2, '[1]'],
        [3, '[2]'],
      ],
    )
    assert.match(bad.problems[0].message, /must be http:\/\/ or https:\/\//)
    const syntax = parseTargetFile('t.yaml', '- http://127.0.0.1:1\n- {url: \n', {})
    assert.ok('problems' in syntax && syntax.problems[0].line >= 2)
    const notList = parseTargetFile('t.yaml', 'targets: []\n', {})
    assert.ok('problems' in notList)
    assert.match(notList.problems[0].message, /expected (a list|an array)/)
    const blank = parseTargetFile('t.yaml', '', {})
    assert.ok('problems' in blank)
  })
})

describe('FileSource', () => {
  let dir: string
  let source: FileSource | null = null

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-discovery-'))
  })
  after(async () => {
    source?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('follows writes and renames over the file, and keeps the last good list on a bad one', async () => {
    const file = join(dir, 'targets.yaml')
    await writeFile(file, '- http://127.0.0.1:1\n')
    const lists: (readonly TargetConfig[])[] = []
    source = new FileSource(file, {}, pino({ level: 'silent' }), (targets) => lists.push(targets), 20)
    await source.start()
    assert.deepEqual(
      lists.map((l) => l.map((t) => t.url)),
      [['http://127.0.0.1:1']],
    )
    await writeFile(file, '- http://127.0.0.1:1\n- http://127.0.0.1:2\n')
    await eventually(() => lists.length === 2, { timeout: 10_000 })
    // An editor's atomic save: a new file renamed over the old one.
    await writeFile(join(dir, 'targets.tmp'), '- http://127.0.0.1:3\n')
    await rename(join(dir, 'targets.tmp'), file)
    await eventually(
      () =>
        assert.deepEqual(
          lists.at(-1)?.map((t) => t.url),
          ['http://127.0.0.1:3'],
        ),
      {
        timeout: 10_000,
      },
    )
    const count = lists.length
    await writeFile(file, '- ftp://nope:1\n')
    await writeFile(join(dir, 'marker.yaml'), 'x')
    await writeFile(file, '- http://127.0.0.1:3\n- ftp://nope:1\n')
    // Only a good file is published: the next one shows nothing came between.
    await writeFile(file, '- http://127.0.0.1:4\n')
    await eventually(
      () =>
        assert.deepEqual(
          lists.at(-1)?.map((t) => t.url),
          ['http://127.0.0.1:4'],
        ),
      {
        timeout: 10_000,
      },
    )
    assert.equal(lists.length, count + 1)
  })
})
