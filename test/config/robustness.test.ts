/**
 * Any file gives a Config or a ConfigError, never a crash: since items that
 * fail the schema are skipped rather than stopping the cross-reference pass,
 * that pass sees partly broken data. Seeded mutations of a full config (one
 * value swapped for a value of another shape, or a key removed) check it.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { ConfigError, loadConfigText } from '../../src/config/index.ts'
import { parseText } from '../../src/config/load.ts'
import { builtinPlugins } from '../../src/plugins/index.ts'
import { ensureFixtureCertificates } from './fixture-certs.ts'

ensureFixtureCertificates()

const VALID = join(dirname(fileURLToPath(import.meta.url)), 'valid')
const REPLACEMENTS: unknown[] = [
  null,
  0,
  -1,
  70000,
  1.5,
  '',
  'x',
  '5 seconds',
  '^(',
  true,
  [],
  [1],
  {},
  { a: 1 },
]

/** Mulberry32: a small seeded generator, so a failure names the case that reproduces it. */
function random(seed: number): () => number {
  let state = seed
  return () => {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Container = Record<string, unknown> | unknown[]

/** Every place in the data that holds a value: [container, key]. */
function places(node: unknown, out: [Container, string | number][] = []): [Container, string | number][] {
  if (Array.isArray(node))
    node.forEach((child, i) => {
      out.push([node, i])
      places(child, out)
    })
  else if (node !== null && typeof node === 'object')
    for (const [key, child] of Object.entries(node)) {
      out.push([node as Record<string, unknown>, key])
      places(child, out)
    }
  return out
}

describe('config robustness', () => {
  it('answers a Config or a ConfigError with located problems for 60 mutated files', () => {
    const text = readFileSync(join(VALID, 'all-keys.yaml'), 'utf8')
    const base = parseText(join(VALID, 'all-keys.yaml'), text, {}).loaded?.data
    const next = random(20260101)
    let refused = 0
    for (let round = 0; round < 60; round++) {
      const data = structuredClone(base)
      const edits: string[] = []
      for (let n = 1 + Math.floor(next() * 3); n > 0; n--) {
        const all = places(data)
        const [container, key] = all[Math.floor(next() * all.length)]
        const remove = next() < 0.2
        const value = REPLACEMENTS[Math.floor(next() * REPLACEMENTS.length)]
        edits.push(
          `${remove ? 'remove' : 'set'} ${String(key)}${remove ? '' : ` = ${JSON.stringify(value)}`}`,
        )
        if (remove && !Array.isArray(container)) delete container[key as string]
        else (container as Record<string | number, unknown>)[key] = structuredClone(value)
      }
      try {
        // JSON is YAML: the mutated data goes through the same loader, from the same folder.
        loadConfigText(join(VALID, 'mutated.json'), JSON.stringify(data, null, 1), {
          plugins: builtinPlugins(),
          env: {},
        })
      } catch (error) {
        assert.ok(
          error instanceof ConfigError,
          `round ${round} (${edits.join('; ')}): ${(error as Error).stack}`,
        )
        assert.ok(error.problems.length > 0)
        for (const p of error.problems) assert.ok(p.line >= 1 && p.column >= 1 && p.message !== '', p.message)
        refused++
      }
    }
    assert.ok(refused > 40, `only ${refused} of 60 mutations were refused`)
  })
})
