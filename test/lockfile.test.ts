/**
 * `npm ci` (what CI runs) refuses a lockfile that lacks an entry for an
 * optional dependency; the registry here lacks some platform builds, so
 * `npm install` leaves them out. scripts/lock-optional.ts puts them back.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { LOCKFILE, missingOptional } from '../scripts/lock-optional.ts'

describe('package-lock.json', () => {
  it('has an entry for every optional dependency, so npm ci accepts it', () => {
    const missing = missingOptional(JSON.parse(readFileSync(LOCKFILE, 'utf8'))).map(([key]) => key)
    assert.deepEqual(missing, [], 'run `node scripts/lock-optional.ts` after npm install')
  })
})
