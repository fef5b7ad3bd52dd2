/**
 * One copy of a service and its connection pool (undici Pool, keep-alive).
 * Pools are keyed by everything that shapes a connection, so a reload that
 * leaves a target's definition alone carries the pool over, connections and all.
 */
import { isIP } from 'node:net'
import { Pool } from 'undici'
import type { ServiceConfig, TargetConfig } from '../config/types.ts'
import { TargetState } from './target-state.ts'

export class Target {
  readonly url: string
  readonly origin: string
  /** Host header value for this target (host, and port when not the scheme's default). */
  readonly host: string
  readonly weight: number
  readonly pool: Pool
  readonly poolKey: string
  /**
   * TLS SNI name for an https:// target (null for http:// and bare IPs). Given
   * with every request: undici would otherwise take it from the Host header,
   * so preserveHost or hostRewrite would change the SNI and churn connections.
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
    pool: Pool,
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

export function createPool(target: TargetConfig, service: ServiceConfig): Pool {
  const url = new URL(target.origin)
  return new Pool(target.origin, {
    connections: service.pool.connections,
    keepAliveTimeout: service.pool.keepAliveTimeoutMs,
    keepAliveMaxTimeout: Math.max(service.pool.keepAliveTimeoutMs, 1000),
    // Response timeouts are set per request at dispatch; these are ceilings.
    headersTimeout: service.timeouts.responseMs,
    bodyTimeout: service.timeouts.idleMs,
    connect: {
      timeout: service.timeouts.connectMs,
      ...(url.protocol === 'https:'
        ? {
            servername: serverNameFor(target, service) ?? undefined,
            rejectUnauthorized: service.tls.verify,
            ...(service.tls.ca === null ? {} : { ca: service.tls.ca }),
          }
        : {}),
    },
  })
}
