/**
 * The discovery sources of a config, one per service that has `discovery`,
 * and their last results. A source is keyed by its settings: a reload that
 * leaves a service's discovery settings alone keeps its source running with
 * its last result, so reloading never drops discovered targets; changed or
 * removed settings stop the old source.
 *
 * The running snapshot is never changed in place: `apply` derives a Config
 * whose discovered services carry the current lists, and the gateway compiles
 * and swaps it in like a reload (see Gateway).
 */
import type { Logger } from 'pino'
import type { Env } from '../../config/load.ts'
import type { Config, DiscoveryConfig, ServiceConfig, TargetConfig } from '../../config/types.ts'
import { DnsSource } from './dns.ts'
import { FileSource } from './file.ts'
import type { DiscoverySource } from './source.ts'

interface Entry {
  /** The settings this source runs with. */
  key: string
  source: DiscoverySource
  /** null until the first result. */
  targets: readonly TargetConfig[] | null
  /** The first attempt is over (found targets or failed). */
  first: Promise<void>
}

export interface DiscoveryOptions {
  logger: Logger
  env: Env
  /** A source's list changed (the gateway rebuilds its snapshot). */
  onChange: () => void
}

export class Discovery {
  readonly #options: DiscoveryOptions
  readonly #entries = new Map<string, Entry>()

  constructor(options: DiscoveryOptions) {
    this.#options = options
  }

  /** Starts the sources `config` needs that do not run yet, stops the others. */
  sync(config: Config): void {
    for (const [name, entry] of this.#entries) {
      const discovery = config.services[name]?.discovery ?? null
      if (discovery === null || settingsKey(discovery) !== entry.key) {
        entry.source.stop()
        this.#entries.delete(name)
      }
    }
    for (const [name, service] of Object.entries(config.services)) {
      if (service.discovery === null || this.#entries.has(name)) continue
      this.#entries.set(name, this.#start(name, service.discovery))
    }
  }

  /** Resolves when every source has made its first attempt, or after `timeoutMs`. */
  async ready(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs)
    })
    await Promise.race([Promise.all([...this.#entries.values()].map((e) => e.first)), timeout])
    clearTimeout(timer)
  }

  /**
   * `config` with each discovered service's targets replaced by the last list
   * found (empty before the first result, or when its source runs other
   * settings, i.e. before sync). The given config is left as it is.
   */
  apply(config: Config): Config {
    let services: Record<string, ServiceConfig> | null = null
    for (const [name, service] of Object.entries(config.services)) {
      if (service.discovery === null) continue
      const entry = this.#entries.get(name)
      const targets = entry?.key === settingsKey(service.discovery) ? (entry.targets ?? []) : []
      services ??= { ...config.services }
      services[name] = Object.freeze({ ...service, targets: Object.freeze([...targets]) })
    }
    return services === null ? config : Object.freeze({ ...config, services: Object.freeze(services) })
  }

  stop(): void {
    for (const entry of this.#entries.values()) entry.source.stop()
    this.#entries.clear()
  }

  #start(name: string, discovery: DiscoveryConfig): Entry {
    const { logger, env, onChange } = this.#options
    const onTargets = (targets: readonly TargetConfig[]) => {
      // A stopped or replaced source's late answer must not reach the new snapshot.
      if (this.#entries.get(name) !== entry) return
      entry.targets = targets
      onChange()
    }
    const child = logger.child({ service: name })
    const source =
      discovery.kind === 'dns'
        ? new DnsSource(discovery, child, onTargets)
        : new FileSource(discovery.path, env, child, onTargets)
    // Started after the caller registered the entry, so the first result finds it.
    const first = Promise.resolve().then(() => source.start())
    const entry: Entry = { key: settingsKey(discovery), source, targets: null, first }
    return entry
  }
}

function settingsKey(discovery: DiscoveryConfig): string {
  return JSON.stringify(discovery)
}
