/**
 * One copy of a service and its connection pool (http1/pool.ts, keep-alive).
 * Pools are keyed by everything that shapes a connection, so a reload that
 * leaves a target's definition alone carries the pool over, connections and all.
 */
import { isIP } from 'node:net'
import type { ServiceConfig, TargetConfig } from '../config/types.ts'
import type { Dispatcher } from './http1/handler.ts'
import { UpstreamPool } from './http1/pool.ts'
import { TargetState } from './target-state.ts'

export class Target {
  readonly url: string
  readonly origin: string
  /** Host header value for this target (host, and port when not the scheme's default). */
  readonly host: string
  readonly weight: number
  readonly pool: Dispatcher
  readonly poolKey: string
  /**
   * TLS SNI name for an https:// target (null for http:// and bare IPs): fixed
   * per target, never taken from the Host header, so preserveHost or
   * hostRewrite cannot change the SNI.
   */
  readonly serverName: string | null
  /** Serves only when every primary is down. */
  readonly backup: boolean
  /**
   * Draining by config (`drain: true`). Copied into `state.draining` when this
   * snapshot goes live (Selection.activate), not here: the state is shared
   * with the snapshot still serving, and a reload may yet be refused.
   */
  readonly drain: boolean
  /** Health, ejection, load and latency; carried over by a reload that keeps this target. */
  readonly state: TargetState

  constructor(
    config: TargetConfig,
    pool: Dispatcher,
    poolKey: string,
    serverName: string | null = null,
    state: TargetState = new TargetState(performance.now()),
  ) {
    this.url = config.url
    this.origin = config.origin
    this.host = new URL(config.origin).host
    this.weight = config.weight
    this.pool = pool
    this.poolKey = poolKey
    this.serverName = serverName
    this.backup = config.backup
    this.state = state
    this.drain = config.drain
  }
}

/** The SNI name for a target: `tls.serverName`, else the target's host name; none for IPs (RFC 6066 §3). */
export function serverNameFor(target: TargetConfig, service: ServiceConfig): string | null {
  const url = new URL(target.origin)
  if (url.protocol !== 'https:') return null
  return service.tls.serverName ?? (isIP(url.hostname.replace(/^\[|\]$/g, '')) === 0 ? url.hostname : null)
}

export function poolKey(target: TargetConfig, service: ServiceConfig): string {
  return JSON.stringify([
    target.origin,
    service.pool.connections,
    service.pool.keepAliveTimeoutMs,
    service.timeouts.connectMs,
    service.tls.ca,
    service.tls.serverName,
    service.tls.verify,
  ])
}

export function createPool(target: TargetConfig, service: ServiceConfig): UpstreamPool {
  const secure = new URL(target.origin).protocol === 'https:'
  return new UpstreamPool({
    origin: target.origin,
    connections: service.pool.connections,
    keepAliveTimeoutMs: service.pool.keepAliveTimeoutMs,
    connectTimeoutMs: service.timeouts.connectMs,
    tls: secure
      ? {
          servername: serverNameFor(target, service) ?? undefined,
          rejectUnauthorized: service.tls.verify,
          ...(service.tls.ca === null ? {} : { ca: service.tls.ca }),
        }
      : null,
  })
}
