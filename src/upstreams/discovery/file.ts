/**
 * Targets from a JSON or YAML file holding a list in the same forms as a
 * service's `targets` (a URL, or {url, weight, backup, drain}). The folder is
 * watched, not the file, for the reasons Gateway.watch gives (editors that
 * rename over the file, Kubernetes ConfigMap symlink swaps); events are
 * debounced and only a changed text is read again. Every version is checked
 * like the config file is, with line numbers; a bad one is logged and the
 * last good list keeps serving. An empty list ([]) is valid: no targets.
 */
import { type FSWatcher, watch } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { Type } from '@sinclair/typebox'
import type { Logger } from 'pino'
import { createAjv } from '../../config/index.ts'
import { type Env, parseText } from '../../config/load.ts'
import { normalizeTargets } from '../../config/normalize.ts'
import { type ConfigProblem, formatPath, formatProblems, type PathSegment } from '../../config/problems.ts'
import { Target } from '../../config/schema.ts'
import { schemaProblems, validateCopy } from '../../config/schema-errors.ts'
import type { TargetConfig } from '../../config/types.ts'
import { type DiscoverySource, type OnTargets, targetsKey } from './source.ts'

const TargetList = Type.Array(Target)

/** Checks a discovery file's text: the targets, or every problem with its line and column. */
export function parseTargetFile(
  file: string,
  text: string,
  env: Env,
): { targets: TargetConfig[] } | { problems: ConfigProblem[] } {
  const { loaded, problems } = parseText(file, text, env)
  if (!loaded) return { problems }
  const validate = createAjv().compile(TargetList)
  const checked = validateCopy<Parameters<typeof normalizeTargets>[0]>(validate, loaded.data, loaded)
  if (checked.errors.length > 0) return { problems: schemaProblems(checked.errors, loaded) }
  const found: ConfigProblem[] = []
  const report = (path: PathSegment[], message: string) =>
    found.push({ file, ...loaded.locate(path), path: formatPath(path), message })
  const targets = normalizeTargets(checked.value, [], report)
  return found.length > 0 ? { problems: found } : { targets }
}

export class FileSource implements DiscoverySource {
  readonly #file: string
  readonly #env: Env
  readonly #logger: Logger
  readonly #onTargets: OnTargets
  readonly #debounceMs: number
  #watcher: FSWatcher | null = null
  #timer: NodeJS.Timeout | undefined
  #seen: string | null = null
  #lastKey: string | null = null
  #stopped = false

  constructor(file: string, env: Env, logger: Logger, onTargets: OnTargets, debounceMs = 100) {
    this.#file = file
    this.#env = env
    this.#logger = logger.child({ discovery: 'file', file })
    this.#onTargets = onTargets
    this.#debounceMs = debounceMs
  }

  start(): Promise<void> {
    try {
      this.#watcher = watch(dirname(this.#file), (_event, name) => {
        // Other files in the folder are not ours; a null name (some platforms) may be.
        if (name !== null && !this.#concerns(name)) return
        clearTimeout(this.#timer)
        this.#timer = setTimeout(() => void this.#read(), this.#debounceMs)
        this.#timer.unref()
      })
      this.#watcher.on('error', (error) => {
        this.#logger.error({ err: error }, 'stopped watching the discovery file; the last targets stay')
        this.#watcher?.close()
      })
      this.#watcher.unref()
    } catch (error) {
      this.#logger.error({ err: error }, 'cannot watch the discovery file; it is read once')
    }
    return this.#read()
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#watcher?.close()
  }

  /** The file itself, or a Kubernetes `..data` swap that replaces what it links to. */
  #concerns(name: string): boolean {
    return name === basename(this.#file) || name.startsWith('..')
  }

  async #read(): Promise<void> {
    const text = await readFile(this.#file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      // Missing for a moment between unlink and rename: the next event brings it.
      if (this.#seen === null) this.#logger.error({ err: error }, 'cannot read the discovery file')
      return null
    })
    if (text === null || text === this.#seen || this.#stopped) return
    this.#seen = text
    const result = parseTargetFile(this.#file, text, this.#env)
    if ('problems' in result) {
      this.#logger.error(
        { problems: result.problems },
        `discovery file refused, keeping the last good targets:\n${formatProblems(result.problems)}`,
      )
      return
    }
    const key = targetsKey(result.targets)
    if (key === this.#lastKey) return
    this.#lastKey = key
    this.#logger.info({ targets: result.targets.map((t) => t.url) }, 'discovery file read')
    this.#onTargets(result.targets)
  }
}
