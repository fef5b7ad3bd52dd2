/**
 * Keeps package-lock.json acceptable to `npm ci` here. The registry this
 * project installs from does not carry every platform build of an optional
 * dependency (Biome's darwin, win32, android and musl binaries answer 404),
 * so `npm install` leaves them out of the lockfile and `npm ci` then refuses
 * the lockfile as out of sync ("Missing: @biomejs/cli-darwin-x64@ from lock
 * file"). This adds an entry for each missing optional dependency; npm ci
 * then tries it, fails to fetch it, and skips it, as it does any optional
 * dependency it cannot install. Run after `npm install` changes the lockfile:
 *
 *   node scripts/lock-optional.ts          (test/lockfile.test.ts checks it)
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

interface LockEntry {
  version?: string
  dev?: boolean
  optional?: boolean
  optionalDependencies?: Record<string, string>
}

export const LOCKFILE = fileURLToPath(new URL('../package-lock.json', import.meta.url))

/** Optional dependencies that locked packages name but the lockfile has no entry for. */
export function missingOptional(lock: {
  packages: Record<string, LockEntry>
}): [name: string, entry: LockEntry][] {
  const missing = new Map<string, LockEntry>()
  for (const [path, entry] of Object.entries(lock.packages)) {
    for (const [name, range] of Object.entries(entry.optionalDependencies ?? {})) {
      const key = `node_modules/${name}`
      if (lock.packages[key] || lock.packages[`${path}/${key}`]) continue
      missing.set(key, { version: range.replace(/^[\^~=]/, ''), dev: entry.dev, optional: true })
    }
  }
  return [...missing.entries()]
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const lock = JSON.parse(readFileSync(LOCKFILE, 'utf8'))
  const missing = missingOptional(lock)
  for (const [key, entry] of missing) lock.packages[key] = entry
  lock.packages = Object.fromEntries(
    Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)),
  )
  writeFileSync(LOCKFILE, `${JSON.stringify(lock, null, 2)}\n`)
  process.stdout.write(
    `package-lock.json: added ${missing.length} optional entr${missing.length === 1 ? 'y' : 'ies'}\n`,
  )
}
