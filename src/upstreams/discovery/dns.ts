/**
 * Targets from DNS, re-resolved in the background with node:dns's Resolver
 * (c-ares: asks the servers given, not getaddrinfo, so TTLs are seen).
 *
 * - A / AAAA: one target per address at the configured port. The next query
 *   runs when the shortest TTL runs out (at least 1s, so a TTL of 0 does not
 *   hammer the server), and at the latest after `interval`.
 * - SRV (RFC 2782): targets from the records of the lowest priority only (the
 *   others are fallbacks there; HAProxy and Envoy do the same), host:port from
 *   the record, the host resolved with A. Node gives no TTL for SRV, so it is
 *   re-resolved every `interval` (or the shortest A TTL of its hosts).
 *   Weights: SRV weight 0 means "very rarely when others have weight" (RFC
 *   2782), while weight 0 here takes a target out of rotation, so 0 becomes 1;
 *   weights above 1000 (the most a target may have) are scaled down together.
 * - A failed query (timeout, SERVFAIL, refused) keeps the last good list and
 *   is logged; the next try comes after min(interval, 5s). An answer that
 *   says the name has no records (NXDOMAIN, NODATA) empties the list: DNS is
 *   the source of truth, as with Envoy's strict DNS, so no grace period.
 */
import { Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { Logger } from 'pino'
import type { DiscoveryConfig, TargetConfig } from '../../config/types.ts'
import { type DiscoverySource, type OnTargets, targetsKey } from './source.ts'

export type DnsDiscovery = Extract<DiscoveryConfig, { kind: 'dns' }>

/** Shortest time between two queries, whatever the TTL says. */
export const TTL_FLOOR_MS = 1000
const RETRY_AFTER_FAILURE_MS = 5000
const MAX_WEIGHT = 1000

/** The answer says the name has no such records: an empty list, not a failure. */
const NO_RECORDS = new Set(['ENOTFOUND', 'ENODATA'])

interface Answer {
  targets: TargetConfig[]
  /** Shortest TTL in the answer, in seconds; null when the records carry none. */
  ttl: number | null
}

export class DnsSource implements DiscoverySource {
  readonly #settings: DnsDiscovery
  readonly #logger: Logger
  readonly #onTargets: OnTargets
  readonly #resolver: Resolver
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  #lastKey: string | null = null

  constructor(settings: DnsDiscovery, logger: Logger, onTargets: OnTargets) {
    this.#settings = settings
    this.#logger = logger.child({ discovery: 'dns', name: settings.name, type: settings.type })
    this.#onTargets = onTargets
    this.#resolver = new Resolver({ timeout: 2000, tries: 2 })
    if (settings.servers.length > 0) this.#resolver.setServers([...settings.servers])
  }

  start(): Promise<void> {
    return this.#resolveNow()
  }

  stop(): void {
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#resolver.cancel()
  }

  async #resolveNow(): Promise<void> {
    let delayMs: number
    try {
      const answer = await this.#query()
      if (this.#stopped) return
      this.#publish(answer.targets)
      const ttlMs = answer.ttl === null ? Number.POSITIVE_INFINITY : answer.ttl * 1000
      delayMs = Math.min(this.#settings.intervalMs, Math.max(ttlMs, TTL_FLOOR_MS))
    } catch (error) {
      if (this.#stopped) return
      const code = (error as NodeJS.ErrnoException).code
      if (code !== undefined && NO_RECORDS.has(code)) {
        this.#publish([])
        delayMs = this.#settings.intervalMs
      } else {
        this.#logger.warn({ err: error }, 'DNS discovery failed; keeping the last targets found')
        delayMs = Math.min(this.#settings.intervalMs, RETRY_AFTER_FAILURE_MS)
      }
    }
    this.#timer = setTimeout(() => void this.#resolveNow(), delayMs)
    this.#timer.unref()
  }

  #publish(targets: TargetConfig[]): void {
    const key = targetsKey(targets)
    if (key === this.#lastKey) return
    if (targets.length === 0) this.#logger.warn('DNS discovery found no records: the service has no targets')
    else this.#logger.info({ targets: targets.map((t) => t.url) }, 'DNS discovery found a new target list')
    this.#lastKey = key
    this.#onTargets(targets)
  }

  #query(): Promise<Answer> {
    const { type, name, port, scheme } = this.#settings
    if (type === 'SRV') return this.#querySrv()
    return this.#addresses(name, type).then(({ addresses, ttl }) => ({
      targets: addresses.map((address) => target(scheme, address, port ?? 0, 1)),
      ttl,
    }))
  }

  async #addresses(host: string, type: 'A' | 'AAAA'): Promise<{ addresses: string[]; ttl: number | null }> {
    const records =
      type === 'A'
        ? await this.#resolver.resolve4(host, { ttl: true })
        : await this.#resolver.resolve6(host, { ttl: true })
    const addresses = [...new Set(records.map((r) => r.address))].sort()
    const ttl = records.length === 0 ? null : Math.min(...records.map((r) => r.ttl))
    return { addresses, ttl }
  }

  async #querySrv(): Promise<Answer> {
    const records = await this.#resolver.resolveSrv(this.#settings.name)
    if (records.length === 0) return { targets: [], ttl: null }
    const lowest = Math.min(...records.map((r) => r.priority))
    const chosen = records.filter((r) => r.priority === lowest)
    const heaviest = Math.max(...chosen.map((r) => r.weight))
    const scale = heaviest > MAX_WEIGHT ? MAX_WEIGHT / heaviest : 1
    const targets: TargetConfig[] = []
    let ttl: number | null = null
    for (const record of chosen) {
      const weight = Math.max(1, Math.round(record.weight * scale))
      // RFC 2782: a target of "." means the service is decidedly not available here.
      if (record.name === '' || record.name === '.') continue
      let addresses: string[]
      if (isIP(record.name) !== 0) addresses = [record.name]
      else {
        try {
          const found = await this.#addresses(record.name, 'A')
          addresses = found.addresses
          if (found.ttl !== null) ttl = ttl === null ? found.ttl : Math.min(ttl, found.ttl)
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code
          // A host without addresses drops out; any other failure fails the whole answer (keep the last list).
          if (code === undefined || !NO_RECORDS.has(code)) throw error
          addresses = []
        }
      }
      for (const address of addresses)
        targets.push(target(this.#settings.scheme, address, record.port, weight))
    }
    return { targets: dedupe(targets), ttl }
  }
}

function target(scheme: string, address: string, port: number, weight: number): TargetConfig {
  const host = isIP(address) === 6 ? `[${address}]` : address
  const url = `${scheme}://${host}:${port}`
  return { url, origin: new URL(url).origin, weight, backup: false, drain: false }
}

/** Two SRV records naming the same host:port: one target, the weights added up. */
function dedupe(targets: TargetConfig[]): TargetConfig[] {
  const byOrigin = new Map<string, TargetConfig>()
  for (const t of targets) {
    const seen = byOrigin.get(t.origin)
    byOrigin.set(t.origin, seen ? { ...seen, weight: Math.min(MAX_WEIGHT, seen.weight + t.weight) } : t)
  }
  return [...byOrigin.values()].sort((a, b) => a.url.localeCompare(b.url))
}
