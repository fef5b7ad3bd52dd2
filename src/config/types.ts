/**
 * The normalized config: what the YAML means, with every default filled in,
 * durations in milliseconds and sizes in bytes. Frozen; the runtime, the
 * admin API and tests all read this object, never the file.
 */
export interface Config {
  readonly listeners: readonly ListenerConfig[]
  readonly services: Readonly<Record<string, ServiceConfig>>
  readonly routes: readonly RouteConfig[]
  readonly global: GlobalConfig
  readonly accessLog: AccessLogConfig
  /** Serving threads; 'auto' is resolved at start (workers/count.ts). */
  readonly workers: number | 'auto'
}

export type AccessLogConfig =
  | { readonly to: 'stdout' | 'stderr' | 'off' }
  | { readonly to: 'file'; readonly file: string }

export interface GlobalConfig {
  readonly plugins: readonly PluginUse[]
  readonly trustedProxies: readonly string[]
  readonly requestIdHeader: string
  readonly hideUpstreamHeaders: readonly string[]
  readonly gracePeriodMs: number
}

export interface LimitsConfig {
  readonly maxHeaderSize: number
  readonly maxHeaderCount: number
  readonly maxUrlLength: number
  readonly maxBodySize: number
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly maxConnections: number
}

export interface CertificateConfig {
  readonly cert: string
  readonly key: string
  /** PEM text, read at load so a missing file is a config error, not a runtime one. */
  readonly certPem: string
  readonly keyPem: string
  readonly serverNames: readonly string[]
  readonly default: boolean
}

export interface ListenerConfig {
  readonly name: string
  readonly host: string
  readonly port: number
  readonly tls: {
    readonly certificates: readonly CertificateConfig[]
    readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
    readonly http2: boolean
  } | null
  readonly redirectToHttps: { readonly port: number; readonly status: number } | null
  readonly limits: LimitsConfig
}

export interface TargetConfig {
  readonly url: string
  /** scheme://host:port, the pool key. */
  readonly origin: string
  readonly weight: number
  readonly backup: boolean
  readonly drain: boolean
}

/** Where a service's targets come from when not listed; see src/upstreams/discovery/. */
export type DiscoveryConfig =
  | {
      readonly kind: 'dns'
      readonly name: string
      readonly type: 'A' | 'AAAA' | 'SRV'
      /** null for SRV (the records carry the ports). */
      readonly port: number | null
      readonly scheme: 'http' | 'https'
      readonly intervalMs: number
      /** Empty: the system resolver. */
      readonly servers: readonly string[]
    }
  | { readonly kind: 'file'; readonly path: string }

export interface ServiceConfig {
  readonly name: string
  /** With discovery: empty here; the gateway compiles the discovered ones in. */
  readonly targets: readonly TargetConfig[]
  readonly discovery: DiscoveryConfig | null
  readonly balancer: BalancerConfig
  readonly sticky: StickyConfig | null
  readonly healthCheck: {
    readonly active: ActiveHealthConfig | null
    readonly passive: PassiveHealthConfig | null
  }
  readonly slowStartMs: number
  /** Percent of healthy primaries below which all primaries are used; 0 = never. */
  readonly panicThreshold: number
  /** null: no circuit breaker. */
  readonly circuitBreaker: CircuitBreakerConfig | null
  readonly timeouts: {
    readonly connectMs: number
    readonly responseMs: number
    readonly idleMs: number
    /** The whole exchange, retries and backoff included; 0 = off. */
    readonly totalMs: number
  }
  readonly retries: RetryConfig
  readonly pool: { readonly connections: number; readonly keepAliveTimeoutMs: number }
  readonly tls: {
    readonly caFile: string | null
    readonly ca: string | null
    readonly serverName: string | null
    readonly verify: boolean
  }
  readonly plugins: readonly PluginUse[]
}

/** What makes a failed try worth another (beside `statuses`). */
export type RetryCondition = 'connect-failure' | 'reset' | 'timeout'

export interface RetryConfig {
  /** Tries in all, the first included; 1 = no retries. */
  readonly attempts: number
  readonly methods: readonly string[]
  readonly on: readonly RetryCondition[]
  readonly statuses: readonly number[]
  /** Response-head timeout of each try; null = timeouts.response. */
  readonly perTryTimeoutMs: number | null
  readonly backoff: { readonly baseMs: number; readonly maxMs: number }
  readonly budget: { readonly percent: number; readonly min: number }
  /** Bodies up to this many bytes are kept for a retry; 0 = only body-less requests are retried. */
  readonly bufferBodyBytes: number
}

/** A route's overrides of its service's timeouts; null where the service's apply. */
export interface RouteTimeoutsConfig {
  readonly responseMs: number | null
  readonly idleMs: number | null
  readonly totalMs: number | null
}

export type HashKeyConfig =
  | { readonly from: 'ip' }
  | { readonly from: 'path' }
  | { readonly from: 'header' | 'cookie' | 'query'; readonly name: string }

export type BalancerConfig =
  | { readonly algorithm: 'round-robin' | 'least-connections' | 'ip-hash' | 'random' | 'ewma' }
  | { readonly algorithm: 'consistent-hash'; readonly key: HashKeyConfig }

export type StickyConfig =
  | {
      readonly by: 'cookie'
      readonly name: string
      /** null: a session cookie. */
      readonly maxAgeMs: number | null
      /** null: Secure on HTTPS listeners only. */
      readonly secure: boolean | null
    }
  | { readonly by: 'ip'; readonly ttlMs: number }

export interface ActiveHealthConfig {
  readonly type: 'http' | 'tcp'
  readonly method: string
  readonly path: string
  readonly host: string | null
  /** Healthy statuses; null means 200-399. */
  readonly expectStatus: readonly number[] | null
  readonly bodyMatch: string | null
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly healthyThreshold: number
  readonly unhealthyThreshold: number
}

export interface CircuitBreakerConfig {
  /** Percent of failed attempts within the window that opens the breaker. */
  readonly failureRate: number
  /** The rolling window (counted in 10 buckets). */
  readonly windowMs: number
  /** Attempts that must have finished within the window before the rate counts. */
  readonly minRequests: number
  /** Open this long, then half-open. Also how long a trial that never reports holds its slot. */
  readonly openForMs: number
  /** Trials in flight at once while half-open; that many successes close the breaker. */
  readonly halfOpenRequests: number
  /** Response statuses that count as failures. */
  readonly statuses: readonly number[]
  /** One breaker per target instead of one for the service. */
  readonly perTarget: boolean
}

export interface PassiveHealthConfig {
  readonly failures: number
  readonly windowMs: number
  readonly statuses: readonly number[]
  readonly ejectionTimeMs: number
  readonly maxEjectionTimeMs: number
  readonly maxEjectedPercent: number
}

export type StringMatchConfig =
  | { readonly equals: string }
  | { readonly regex: string }
  | { readonly present: boolean }

export interface RouteConfig {
  readonly name: string
  /** Position in the file's routes list: the last tie-break of precedence. */
  readonly index: number
  readonly hosts: readonly string[] | null
  readonly path: string
  readonly pathMatch: 'prefix' | 'exact' | 'regex'
  readonly methods: readonly string[] | null
  readonly headers: Readonly<Record<string, StringMatchConfig>>
  readonly query: Readonly<Record<string, StringMatchConfig>>
  readonly terminal: TerminalConfig
  readonly stripPrefix: boolean
  readonly rewrite: string | null
  readonly preserveHost: boolean
  readonly hostRewrite: string | null
  readonly maxBodySize: number | null
  /** null: the service's timeouts apply. */
  readonly timeouts: RouteTimeoutsConfig | null
  readonly plugins: readonly PluginUse[]
}

export type TerminalConfig =
  | { readonly kind: 'proxy'; readonly service: string }
  | { readonly kind: 'redirect'; readonly to: string; readonly status: number }
  | {
      readonly kind: 'respond'
      readonly status: number
      readonly headers: Readonly<Record<string, string>>
      readonly body: string
    }

/** A plugin attached at a scope, with its validated config (defaults applied). */
export interface PluginUse {
  readonly name: string
  readonly config: Readonly<Record<string, unknown>>
}
