/**
 * The running graph one config compiles to: an immutable snapshot. A request
 * takes the snapshot current when it arrives and finishes on it; a reload
 * compiles a new one beside it and swaps (gateway.ts).
 */
import type { SecureContext } from 'node:tls'
import type { Logger } from 'pino'
import type { Config, LimitsConfig, ListenerConfig, RouteConfig } from '../config/types.ts'
import type { IpMatcher } from '../net/ip.ts'
import type { AccessLog } from '../observability/access-log.ts'
import type { CompleteHandler, RequestHandler, ResponseHandler } from '../pipeline/plugin.ts'
import type { MatchableRoute, Router } from '../routing/router.ts'
import type { UpstreamService } from '../upstreams/service.ts'

/** Handlers of one route per phase, already in execution order; null when a phase has none. */
export interface PhaseChains {
  readonly onRequest: readonly RequestHandler[] | null
  readonly authenticate: readonly RequestHandler[] | null
  readonly authorize: readonly RequestHandler[] | null
  readonly transformRequest: readonly RequestHandler[] | null
  readonly onUpstreamResponse: readonly ResponseHandler[] | null
  readonly transformResponse: readonly ResponseHandler[] | null
  readonly onComplete: readonly CompleteHandler[] | null
}

export type CompiledService = UpstreamService

export interface CompiledRoute extends MatchableRoute {
  readonly config: RouteConfig
  readonly name: string
  readonly service: CompiledService | null
  readonly chains: PhaseChains
  /** Request body limit: the route's, else the listener's (applied per request). */
  readonly maxBodySize: number | null
  /** Builds the upstream path from the matched request; null means forward the path as it came. */
  readonly rewritePath: ((path: string, matched: string, params: Record<string, string>) => string) | null
}

export interface CompiledListener {
  readonly config: ListenerConfig
  readonly key: string
  readonly limits: LimitsConfig
  /** SNI name -> context; exact names, then `*.suffix`, then the default. */
  readonly secureContext: ((servername: string) => SecureContext | undefined) | null
  /** TLS session ticket keys shared by every thread and snapshot (CompileOptions.ticketKeys). */
  readonly ticketKeys: Buffer
}

export interface Runtime {
  readonly config: Config
  readonly version: number
  readonly router: Router<CompiledRoute>
  readonly routes: readonly CompiledRoute[]
  readonly services: ReadonlyMap<string, CompiledService>
  readonly listeners: ReadonlyMap<string, CompiledListener>
  /** Chains of the global plugins, for requests that match no route. */
  readonly globalChains: PhaseChains
  readonly trustedProxies: IpMatcher
  readonly accessLog: AccessLog
  readonly logger: Logger
  /** Requests still running on this snapshot. */
  inflight: number
  retire(): Promise<void>
}
