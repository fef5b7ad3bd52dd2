/**
 * Raw data -> the normalized Config, checking what a schema cannot:
 * cross-references (unknown service or plugin, duplicate route, listener
 * port or name), plugin configs against their own schemas, files that must
 * be readable (certificates, CAs), regexes that must compile, rewrites that
 * use only what the path captures, header names. Items that failed the schema
 * are skipped (`invalid`); every problem is collected with its path, nothing
 * stops at the first.
 */
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { createSecureContext } from 'node:tls'
import type { Ajv } from 'ajv'
import { isIpOrCidr } from '../net/ip.ts'
import type { PluginDefinition } from '../pipeline/plugin.ts'
import type { LoadedFile } from './load.ts'
import { type ConfigProblem, didYouMean, formatPath, type PathSegment } from './problems.ts'
import type { RawConfig, RawListener, RawPluginRef, RawRoute, RawService, RawTarget } from './schema.ts'
import { schemaProblems, validateCopy, withOrigin } from './schema-errors.ts'
import type {
  BalancerConfig,
  CertificateConfig,
  CircuitBreakerConfig,
  Config,
  DiscoveryConfig,
  LimitsConfig,
  ListenerConfig,
  PluginUse,
  RetryConfig,
  RouteConfig,
  ServiceConfig,
  StickyConfig,
  StringMatchConfig,
  TargetConfig,
  TerminalConfig,
} from './types.ts'
import { parseDuration, parseSize } from './units.ts'

export interface NormalizeOptions {
  plugins: ReadonlyMap<string, PluginDefinition<never>>
  ajv: Ajv
  /** Items that failed the schema (paths like `routes[2]`, `global`): skipped here, already reported. */
  invalid?: ReadonlySet<string>
}

export function normalize(
  raw: RawConfig,
  loaded: LoadedFile,
  options: NormalizeOptions,
): { config?: Config; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = []
  const report = (path: PathSegment[], message: string, atKey = false) =>
    problems.push({
      file: loaded.file,
      ...(atKey ? loaded.locateKey(path) : loaded.locate(path)),
      path: formatPath(path),
      message: atKey ? message : withOrigin(message, path, loaded),
    })
  const valid = (path: PathSegment[]) => !options.invalid?.has(formatPath(path))
  const baseDir = dirname(resolve(loaded.file))
  const plugins = new PluginResolver(raw, loaded, options, problems, report, valid)

  const listeners: [number, ListenerConfig][] = []
  if (valid(['listeners']))
    (raw.listeners ?? []).forEach((l, i) => {
      if (valid(['listeners', i]))
        listeners.push([i, normalizeListener(l, ['listeners', i], baseDir, report)])
    })
  checkPorts(listeners, report)
  nameListeners(listeners, raw.listeners ?? [], report)

  // A service that failed the schema still exists: routes naming it are not "unknown service".
  const serviceNames = valid(['services']) ? Object.keys(raw.services ?? {}) : null
  const services: Record<string, ServiceConfig> = {}
  for (const [name, service] of Object.entries(valid(['services']) ? (raw.services ?? {}) : {})) {
    if (valid(['services', name]))
      services[name] = normalizeService(name, service, ['services', name], baseDir, plugins, report)
  }

  const routes: RouteConfig[] = []
  if (valid(['routes']))
    (raw.routes ?? []).forEach((r, i) => {
      if (valid(['routes', i])) routes.push(normalizeRoute(r, i, serviceNames, plugins, report))
    })
  const seenRoutes = new Map<string, number>()
  for (const route of routes) {
    const key = routeKey(route)
    const first = seenRoutes.get(key)
    if (first !== undefined)
      report(
        ['routes', route.index],
        `duplicate route: same host, path, methods and conditions as routes[${first}], which always wins`,
      )
    else seenRoutes.set(key, route.index)
  }

  const global = (valid(['global']) ? raw.global : undefined) ?? {}
  if (global.requestIdHeader !== undefined)
    checkHeaderName(global.requestIdHeader, ['global', 'requestIdHeader'], report)
  global.hideUpstreamHeaders?.forEach((name, i) => {
    checkHeaderName(name, ['global', 'hideUpstreamHeaders', i], report)
  })
  const trustedProxies = global.trustedProxies ?? []
  trustedProxies.forEach((cidr, i) => {
    if (!isIpOrCidr(cidr))
      report(
        ['global', 'trustedProxies', i],
        `expected an IP address or CIDR range, got ${JSON.stringify(cidr)}`,
      )
  })
  const accessLog = (valid(['accessLog']) ? raw.accessLog : undefined) ?? 'stdout'
  const config: Config = {
    listeners: listeners.map(([, l]) => l),
    services,
    routes,
    global: {
      plugins: plugins.list(global.plugins, ['global', 'plugins']),
      trustedProxies,
      requestIdHeader: (global.requestIdHeader ?? 'x-request-id').toLowerCase(),
      hideUpstreamHeaders: (global.hideUpstreamHeaders ?? ['server', 'x-powered-by']).map((h) =>
        h.toLowerCase(),
      ),
      gracePeriodMs: parseDuration(global.gracePeriod ?? '30s'),
    },
    accessLog:
      typeof accessLog === 'string'
        ? { to: accessLog }
        : { to: 'file', file: resolve(baseDir, accessLog.file) },
    workers: (valid(['workers']) ? raw.workers : undefined) ?? 'auto',
  }
  if (problems.length > 0) return { problems }
  return { config: deepFreeze(config), problems }
}

/**
 * Two listeners cannot bind one port on one address, and an unspecified
 * address (0.0.0.0, ::) takes the port on every address: the second bind
 * would fail with EADDRINUSE at start, after the config was called valid.
 */
function checkPorts(listeners: readonly [number, ListenerConfig][], report: Report): void {
  const wildcard = (host: string) => host === '0.0.0.0' || host === '::'
  listeners.forEach(([index, l], position) => {
    if (l.port === 0) return
    const clash = listeners
      .slice(0, position)
      .find(
        ([, other]) =>
          other.port === l.port && (other.host === l.host || wildcard(other.host) || wildcard(l.host)),
      )
    if (!clash) return
    const [first, other] = clash
    report(
      ['listeners', index, 'port'],
      other.host === l.host
        ? `port ${l.port} on ${l.host} is already used by listeners[${first}]`
        : `port ${l.port} on ${l.host} clashes with listeners[${first}] on ${other.host}: ${wildcard(l.host) ? l.host : other.host} takes the port on every address`,
    )
  })
}

/**
 * Listener names key the running servers (and `Gateway.ports()`): a name
 * given twice is refused, a default name that repeats (two `http-0`) gets
 * the listener's index appended.
 */
function nameListeners(
  listeners: [number, ListenerConfig][],
  raw: readonly RawListener[],
  report: Report,
): void {
  const taken = new Map<string, number>()
  listeners.forEach(([index, l], position) => {
    const first = taken.get(l.name)
    if (first === undefined) {
      taken.set(l.name, index)
    } else if (raw[index]?.name !== undefined) {
      report(
        ['listeners', index, 'name'],
        `listener name ${JSON.stringify(l.name)} is already used by listeners[${first}]`,
      )
    } else {
      const name = `${l.name}-${index}`
      taken.set(name, index)
      listeners[position] = [index, { ...l, name }]
    }
  })
}

/** Routes that match exactly the same requests: order inside lists and maps does not matter. */
function routeKey(route: RouteConfig): string {
  const sorted = (record: Readonly<Record<string, StringMatchConfig>>) =>
    Object.keys(record)
      .sort()
      .map((k) => [k, record[k]])
  return JSON.stringify([
    route.hosts === null ? null : [...new Set(route.hosts)].sort(),
    route.path,
    route.pathMatch,
    route.methods === null ? null : [...new Set(route.methods)].sort(),
    sorted(route.headers),
    sorted(route.query),
  ])
}

export type Report = (path: PathSegment[], message: string, atKey?: boolean) => void

const DEFAULT_LIMITS: LimitsConfig = {
  maxHeaderSize: 16 * 1024,
  maxHeaderCount: 100,
  maxUrlLength: 8192,
  maxBodySize: 10 * 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 10_000,
}

function normalizeListener(
  raw: RawListener,
  path: PathSegment[],
  baseDir: string,
  report: Report,
): ListenerConfig {
  const l = raw.limits ?? {}
  const limits: LimitsConfig = {
    maxHeaderSize: l.maxHeaderSize === undefined ? DEFAULT_LIMITS.maxHeaderSize : parseSize(l.maxHeaderSize),
    maxHeaderCount: l.maxHeaderCount ?? DEFAULT_LIMITS.maxHeaderCount,
    maxUrlLength: l.maxUrlLength ?? DEFAULT_LIMITS.maxUrlLength,
    maxBodySize: l.maxBodySize === undefined ? DEFAULT_LIMITS.maxBodySize : parseSize(l.maxBodySize),
    headersTimeoutMs:
      l.headersTimeout === undefined ? DEFAULT_LIMITS.headersTimeoutMs : parseDuration(l.headersTimeout),
    requestTimeoutMs:
      l.requestTimeout === undefined ? DEFAULT_LIMITS.requestTimeoutMs : parseDuration(l.requestTimeout),
    keepAliveTimeoutMs:
      l.keepAliveTimeout === undefined
        ? DEFAULT_LIMITS.keepAliveTimeoutMs
        : parseDuration(l.keepAliveTimeout),
    maxConnections: l.maxConnections ?? DEFAULT_LIMITS.maxConnections,
  }
  if (limits.requestTimeoutMs !== 0 && limits.requestTimeoutMs < limits.headersTimeoutMs)
    report([...path, 'limits', 'requestTimeout'], 'requestTimeout must not be shorter than headersTimeout')
  let tls: ListenerConfig['tls'] = null
  if (raw.tls) {
    const certificates = raw.tls.certificates.map((c, i) =>
      loadCertificate(c, [...path, 'tls', 'certificates', i], baseDir, report),
    )
    const defaults = raw.tls.certificates.flatMap((c, i) => (c.default ? [i] : []))
    for (const i of defaults.slice(1))
      report(
        [...path, 'tls', 'certificates', i, 'default'],
        `only one certificate can be the default; certificates[${defaults[0]}] already is`,
      )
    tls = {
      certificates: certificates.filter((c): c is CertificateConfig => c !== null),
      minVersion: raw.tls.minVersion ?? 'TLSv1.2',
      http2: raw.tls.http2 ?? true,
    }
    if (raw.redirectToHttps)
      report([...path, 'redirectToHttps'], 'redirectToHttps belongs on a plain HTTP listener, not a TLS one')
  }
  return {
    name: raw.name ?? `${raw.tls ? 'https' : 'http'}-${raw.port}`,
    host: raw.host ?? '0.0.0.0',
    port: raw.port,
    tls,
    redirectToHttps: raw.redirectToHttps
      ? { port: raw.redirectToHttps.port ?? 443, status: raw.redirectToHttps.status ?? 308 }
      : null,
    limits,
  }
}

function loadCertificate(
  raw: { cert: string; key: string; serverNames?: string[]; default?: boolean },
  path: PathSegment[],
  baseDir: string,
  report: Report,
): CertificateConfig | null {
  const certFile = resolve(baseDir, raw.cert)
  const keyFile = resolve(baseDir, raw.key)
  const certPem = readText(certFile, [...path, 'cert'], 'certificate', report)
  const keyPem = readText(keyFile, [...path, 'key'], 'key', report)
  if (certPem === null || keyPem === null) return null
  let names = raw.serverNames?.map((n) => n.toLowerCase())
  names?.forEach((name, i) => {
    if (name.includes('*') && !/^\*\.[^*]+$/.test(name))
      report(
        [...path, 'serverNames', i],
        `a wildcard name is written *.example.com (one label), got ${JSON.stringify(name)}`,
      )
  })
  try {
    createSecureContext({ cert: certPem, key: keyPem })
    if (names === undefined) names = namesFromCertificate(new X509Certificate(certPem))
  } catch (error) {
    report(path, `certificate and key cannot be used together: ${(error as Error).message}`)
    return null
  }
  return { cert: certFile, key: keyFile, certPem, keyPem, serverNames: names, default: raw.default ?? false }
}

function namesFromCertificate(cert: X509Certificate): string[] {
  const names = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase())
  const cn = /CN=([^\n,]+)/.exec(cert.subject)?.[1]
  if (names.length === 0 && cn) names.push(cn.toLowerCase())
  return names
}

function readText(file: string, path: PathSegment[], what: string, report: Report): string | null {
  try {
    return readFileSync(file, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    const reason = code === 'ENOENT' ? 'not found' : code === 'EACCES' ? 'permission denied' : (code ?? error)
    report(path, `cannot read ${what} file ${file} (${reason})`)
    return null
  }
}

function normalizeService(
  name: string,
  raw: RawService,
  path: PathSegment[],
  baseDir: string,
  plugins: PluginResolver,
  report: Report,
): ServiceConfig {
  // Exactly one of the two: a static list, or where to discover one.
  if (raw.targets === undefined && raw.discovery === undefined)
    report(path, 'give the service its targets, or discovery to find them', true)
  if (raw.targets !== undefined && raw.discovery !== undefined)
    report([...path, 'discovery'], 'give either targets or discovery, not both', true)
  const targets = normalizeTargets(raw.targets ?? [], [...path, 'targets'], report)
  const caFile = raw.tls?.ca === undefined ? null : resolve(baseDir, raw.tls.ca)
  const ca = caFile === null ? null : readText(caFile, [...path, 'tls', 'ca'], 'CA', report)
  return {
    name,
    targets,
    discovery: normalizeDiscovery(raw.discovery, [...path, 'discovery'], baseDir, report),
    balancer: normalizeBalancer(raw.balancer),
    sticky: normalizeSticky(raw.sticky),
    healthCheck: normalizeHealth(raw.healthCheck, [...path, 'healthCheck'], report),
    slowStartMs: parseDuration(raw.slowStart ?? '0s'),
    panicThreshold: raw.panicThreshold ?? 50,
    circuitBreaker: normalizeCircuitBreaker(raw.circuitBreaker, [...path, 'circuitBreaker'], report),
    timeouts: {
      connectMs: parseDuration(raw.timeouts?.connect ?? '5s'),
      responseMs: parseDuration(raw.timeouts?.response ?? '60s'),
      idleMs: parseDuration(raw.timeouts?.idle ?? '60s'),
      totalMs: parseDuration(raw.timeouts?.total ?? '0s'),
    },
    retries: normalizeRetries(raw.retries),
    pool: {
      connections: raw.pool?.connections ?? 128,
      keepAliveTimeoutMs: parseDuration(raw.pool?.keepAliveTimeout ?? '4s'),
    },
    tls: { caFile, ca, serverName: raw.tls?.serverName ?? null, verify: raw.tls?.verify ?? true },
    plugins: plugins.list(raw.plugins, [...path, 'plugins']),
  }
}

/** Also checks a discovery file's list (src/upstreams/discovery/file.ts). */
export function normalizeTargets(
  raw: readonly RawTarget[],
  path: PathSegment[],
  report: Report,
): TargetConfig[] {
  return raw.map((t, i) => {
    const url = typeof t === 'string' ? t : t.url
    const weight = typeof t === 'string' ? 1 : (t.weight ?? 1)
    const backup = typeof t === 'string' ? false : (t.backup ?? false)
    const drain = typeof t === 'string' ? false : (t.drain ?? false)
    const at = typeof t === 'string' ? [...path, i] : [...path, i, 'url']
    return { url, origin: targetOrigin(url, at, report), weight, backup, drain }
  })
}

function normalizeDiscovery(
  raw: RawService['discovery'],
  path: PathSegment[],
  baseDir: string,
  report: Report,
): DiscoveryConfig | null {
  if (raw === undefined) return null
  if ('file' in raw) return { kind: 'file', path: resolve(baseDir, raw.file.path) }
  const dns = raw.dns
  const type = dns.type ?? 'A'
  if (type !== 'SRV' && dns.port === undefined)
    report([...path, 'dns'], `port is required for ${type} records (they carry no port)`)
  if (type === 'SRV' && dns.port !== undefined)
    report([...path, 'dns', 'port'], 'SRV records carry their own ports: remove port')
  const intervalMs = parseDuration(dns.interval ?? '30s')
  if (intervalMs < 1000) report([...path, 'dns', 'interval'], 'interval must be at least 1s')
  return {
    kind: 'dns',
    name: dns.name,
    type,
    port: type === 'SRV' ? null : (dns.port ?? null),
    scheme: dns.scheme ?? 'http',
    intervalMs,
    servers: dns.servers ?? [],
  }
}

/** RFC 9110 §9.2.2. */
const IDEMPOTENT_METHODS = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']

/**
 * Without a `retries` key a request is still retried once, on a connect
 * failure only (the target never saw it), when it is idempotent and has no
 * body: HAProxy's `retry-on conn-failure`, the failure nobody wants a client
 * to see. A `retries` key turns on resets, timeouts and statuses too.
 */
function normalizeRetries(raw: RawService['retries']): RetryConfig {
  return {
    attempts: raw?.attempts ?? 2,
    methods: raw?.methods ?? IDEMPOTENT_METHODS,
    on: raw === undefined ? ['connect-failure'] : (raw.on ?? ['connect-failure', 'reset', 'timeout']),
    statuses: raw === undefined ? [] : (raw.statuses ?? [502, 503, 504]),
    perTryTimeoutMs: raw?.perTryTimeout === undefined ? null : parseDuration(raw.perTryTimeout),
    backoff: {
      baseMs: parseDuration(raw?.backoff?.base ?? '25ms'),
      maxMs: parseDuration(raw?.backoff?.max ?? '250ms'),
    },
    budget: { percent: raw?.budget?.percent ?? 20, min: raw?.budget?.min ?? 3 },
    bufferBodyBytes: raw === undefined ? 0 : parseSize(raw.bufferBody ?? '64kb'),
  }
}

function normalizeCircuitBreaker(
  raw: RawService['circuitBreaker'],
  path: PathSegment[],
  report: Report,
): CircuitBreakerConfig | null {
  if (raw === undefined) return null
  const windowMs = parseDuration(raw.window ?? '10s')
  const openForMs = parseDuration(raw.openFor ?? '30s')
  // The window is counted in 10 buckets; a zero window or open time would make the breaker meaningless.
  if (windowMs < 10) report([...path, 'window'], 'window must be at least 10ms')
  if (openForMs <= 0) report([...path, 'openFor'], 'openFor must be longer than 0s')
  return {
    failureRate: raw.failureRate ?? 50,
    windowMs,
    minRequests: raw.minRequests ?? 20,
    openForMs,
    halfOpenRequests: raw.halfOpenRequests ?? 3,
    statuses: raw.statuses ?? [502, 503, 504],
    perTarget: raw.perTarget ?? false,
  }
}

function normalizeBalancer(raw: RawService['balancer']): BalancerConfig {
  if (raw === undefined) return { algorithm: 'round-robin' }
  if (typeof raw === 'string') return { algorithm: raw }
  const key = raw.key
  if (key === 'ip' || key === 'path') return { algorithm: 'consistent-hash', key: { from: key } }
  if ('header' in key)
    return { algorithm: 'consistent-hash', key: { from: 'header', name: key.header.toLowerCase() } }
  if ('cookie' in key) return { algorithm: 'consistent-hash', key: { from: 'cookie', name: key.cookie } }
  return { algorithm: 'consistent-hash', key: { from: 'query', name: key.query } }
}

function normalizeSticky(raw: RawService['sticky']): StickyConfig | null {
  if (raw === undefined) return null
  if ('cookie' in raw) {
    const maxAge = raw.cookie.maxAge
    return {
      by: 'cookie',
      name: raw.cookie.name ?? 'gh_sticky',
      maxAgeMs: maxAge === undefined ? null : parseDuration(maxAge),
      secure: raw.cookie.secure ?? null,
    }
  }
  return { by: 'ip', ttlMs: parseDuration(raw.ip.ttl ?? '30m') }
}

function normalizeHealth(
  raw: RawService['healthCheck'],
  path: PathSegment[],
  report: Report,
): ServiceConfig['healthCheck'] {
  const active = raw?.active
  const passive = raw?.passive
  if (active?.bodyMatch !== undefined) checkRegex(active.bodyMatch, [...path, 'active', 'bodyMatch'], report)
  if (active?.path !== undefined && !active.path.startsWith('/'))
    report([...path, 'active', 'path'], `path must start with /, got ${JSON.stringify(active.path)}`)
  return {
    active:
      active === undefined
        ? null
        : {
            type: active.type ?? 'http',
            method: (active.method ?? 'GET').toUpperCase(),
            path: active.path ?? '/',
            host: active.host ?? null,
            expectStatus: active.expectStatus ?? null,
            bodyMatch: active.bodyMatch ?? null,
            intervalMs: parseDuration(active.interval ?? '10s'),
            timeoutMs: parseDuration(active.timeout ?? '2s'),
            healthyThreshold: active.healthyThreshold ?? 2,
            unhealthyThreshold: active.unhealthyThreshold ?? 3,
          },
    passive:
      passive === undefined
        ? null
        : {
            failures: passive.failures ?? 5,
            windowMs: parseDuration(passive.window ?? '10s'),
            statuses: passive.statuses ?? [502, 503, 504],
            ejectionTimeMs: parseDuration(passive.ejectionTime ?? '30s'),
            maxEjectionTimeMs: parseDuration(passive.maxEjectionTime ?? '5m'),
            maxEjectedPercent: passive.maxEjectedPercent ?? 50,
          },
  }
}

function targetOrigin(url: string, path: PathSegment[], report: Report): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    report(path, `expected a URL like http://10.0.0.1:8080, got ${JSON.stringify(url)}`)
    return url
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    report(path, `target must be http:// or https://, got ${parsed.protocol}//`)
  else if ((parsed.pathname !== '/' && parsed.pathname !== '') || parsed.search || parsed.hash)
    report(path, "target URL must not have a path or query; use the route's rewrite to change the path")
  return parsed.origin
}

function normalizeRoute(
  raw: RawRoute,
  index: number,
  serviceNames: readonly string[] | null,
  plugins: PluginResolver,
  report: Report,
): RouteConfig {
  const path: PathSegment[] = ['routes', index]
  const pathMatch = raw.pathMatch ?? 'prefix'
  let regex: RegExp | null = null
  if (pathMatch === 'regex') {
    if (!raw.path.startsWith('^')) report([...path, 'path'], 'a regex path must be anchored: start it with ^')
    regex = checkRegex(raw.path, [...path, 'path'], report)
  } else if (!raw.path.startsWith('/')) {
    report([...path, 'path'], `path must start with /, got ${JSON.stringify(raw.path)}`)
  } else if (/[*()?#\s]/.test(raw.path)) {
    report([...path, 'path'], 'path may not contain * ( ) ? # or spaces; use pathMatch: regex for patterns')
  }
  const terminals = (['service', 'redirect', 'respond'] as const).filter((k) => raw[k] !== undefined)
  let terminal: TerminalConfig = { kind: 'respond', status: 500, headers: {}, body: '' }
  if (terminals.length !== 1) {
    report(
      path,
      terminals.length === 0
        ? 'a route needs one terminal: service, redirect or respond'
        : `a route takes one terminal, got ${terminals.join(' and ')}`,
    )
  } else if (raw.service !== undefined) {
    if (serviceNames !== null && !serviceNames.includes(raw.service))
      report(
        [...path, 'service'],
        `unknown service ${JSON.stringify(raw.service)}${serviceNames.length === 0 ? ' (no services are defined)' : didYouMean(raw.service, serviceNames)}`,
      )
    terminal = { kind: 'proxy', service: raw.service }
  } else if (raw.redirect !== undefined) {
    terminal = { kind: 'redirect', to: raw.redirect.to, status: raw.redirect.status ?? 302 }
  } else if (raw.respond !== undefined) {
    const body = raw.respond.body
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(raw.respond.headers ?? {})) {
      checkHeaderName(k, [...path, 'respond', 'headers', k], report, true)
      // Node refuses these in setHeader (RFC 9110 §5.5): better now than a 500 on every request.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
      if (/[\0-\x08\n-\x1f\x7f]/.test(v))
        report(
          [...path, 'respond', 'headers', k],
          'a header value cannot hold control characters or line breaks',
        )
      headers[k.toLowerCase()] = v
    }
    if (body !== undefined && typeof body !== 'string') headers['content-type'] ??= 'application/json'
    terminal = {
      kind: 'respond',
      status: raw.respond.status ?? 200,
      headers,
      body: body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body),
    }
  }
  if (raw.stripPrefix && pathMatch !== 'prefix')
    report(
      [...path, 'stripPrefix'],
      'stripPrefix needs pathMatch: prefix; use rewrite for exact and regex routes',
    )
  if (raw.stripPrefix && raw.rewrite !== undefined)
    report([...path, 'rewrite'], 'use stripPrefix or rewrite, not both')
  if (raw.preserveHost && raw.hostRewrite !== undefined)
    report([...path, 'hostRewrite'], 'use preserveHost or hostRewrite, not both')
  if (raw.rewrite !== undefined && (pathMatch !== 'regex' || regex !== null))
    checkRewrite(raw.rewrite, raw.path, regex, [...path, 'rewrite'], report)
  const hosts =
    raw.host === undefined
      ? null
      : (Array.isArray(raw.host) ? raw.host : [raw.host]).map((h) => h.toLowerCase())
  hosts?.forEach((h, i) => {
    if (h.includes('*') && !/^\*\.[^*]+$/.test(h))
      report(
        [...path, 'host', ...(Array.isArray(raw.host) ? [i] : [])],
        `a wildcard host is written *.example.com, got ${JSON.stringify(h)}`,
      )
  })
  return {
    name: raw.name ?? `route-${index}`,
    index,
    hosts,
    path: raw.path,
    pathMatch,
    methods: raw.methods ?? null,
    headers: normalizeMatches(raw.headers, [...path, 'headers'], report, true),
    query: normalizeMatches(raw.query, [...path, 'query'], report, false),
    terminal,
    stripPrefix: raw.stripPrefix ?? false,
    rewrite: raw.rewrite ?? null,
    preserveHost: raw.preserveHost ?? false,
    hostRewrite: raw.hostRewrite ?? null,
    maxBodySize: raw.maxBodySize === undefined ? null : parseSize(raw.maxBodySize),
    timeouts:
      raw.timeouts === undefined
        ? null
        : {
            responseMs: raw.timeouts.response === undefined ? null : parseDuration(raw.timeouts.response),
            idleMs: raw.timeouts.idle === undefined ? null : parseDuration(raw.timeouts.idle),
            totalMs: raw.timeouts.total === undefined ? null : parseDuration(raw.timeouts.total),
          },
    plugins: plugins.list(raw.plugins, [...path, 'plugins']),
  }
}

function normalizeMatches(
  raw: Record<string, string | { regex: string } | { present: boolean }> | undefined,
  path: PathSegment[],
  report: Report,
  lowerCaseNames: boolean,
): Record<string, StringMatchConfig> {
  const out: Record<string, StringMatchConfig> = {}
  for (const [name, match] of Object.entries(raw ?? {})) {
    if (lowerCaseNames) checkHeaderName(name, [...path, name], report, true)
    const key = lowerCaseNames ? name.toLowerCase() : name
    if (typeof match === 'string') out[key] = { equals: match }
    else if ('regex' in match) {
      checkRegex(match.regex, [...path, name, 'regex'], report)
      out[key] = { regex: match.regex }
    } else out[key] = { present: match.present }
  }
  return out
}

/** A field name is an RFC 9110 §5.1 token. */
function checkHeaderName(name: string, path: PathSegment[], report: Report, atKey = false): void {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name))
    report(
      path,
      `invalid header name ${JSON.stringify(name)}: letters, digits and !#$%&'*+-.^_\`|~ only (RFC 9110 §5.1)`,
      atKey,
    )
}

function checkRegex(source: string, path: PathSegment[], report: Report): RegExp | null {
  try {
    return new RegExp(source)
  } catch (error) {
    // V8 says "Invalid regular expression: /(/: Unterminated group"; keep only the reason.
    const reason = (error as Error).message.split(': ').at(-1) ?? ''
    report(path, `invalid regular expression: ${reason.charAt(0).toLowerCase()}${reason.slice(1)}`)
    return null
  }
}

const PARAM = /:([A-Za-z_][A-Za-z0-9_]*)/g

/**
 * A rewrite may only use what the path captures: `:name` params of prefix and
 * exact paths (`regex` null), `$1` / `$<name>` groups of regex paths. Anything else would be
 * sent upstream empty (params) or literally (groups), never what was meant.
 */
function checkRewrite(
  rewrite: string,
  source: string,
  regex: RegExp | null,
  path: PathSegment[],
  report: Report,
): void {
  if (regex === null) {
    const known = new Set([...source.matchAll(PARAM)].map((m) => m[1]))
    for (const m of rewrite.matchAll(PARAM))
      if (!known.has(m[1]))
        report(path, `rewrite uses :${m[1]}, which the path does not capture${didYouMean(m[1], known)}`)
    const group = /\$(\d+|<[^>]*>)/.exec(rewrite)
    if (group)
      report(
        path,
        `rewrite uses ${group[0]}, but groups are only captured by pathMatch: regex; use :name params`,
      )
    return
  }
  // Matching the empty alternative gives an array with one slot per group.
  const probe = new RegExp(`${regex.source}|`).exec('') as RegExpExecArray
  const groups = probe.length - 1
  const names = Object.keys(probe.groups ?? {})
  // String.replace semantics: `$$` is a literal $, `$12` falls back to `$1` then "2" when there is no group 12.
  for (const m of rewrite.replace(/\$\$/g, '').matchAll(/\$(?:(\d\d?)|<([^>]*)>)/g)) {
    const digits = m[1]
    if (digits !== undefined) {
      const fits = (n: number) => n >= 1 && n <= groups
      if (!fits(Number(digits)) && !fits(Number(digits[0])))
        report(
          path,
          `rewrite uses $${digits}, but the path regex has ${groups === 0 ? 'no groups' : groups === 1 ? 'one group ($1)' : `${groups} groups ($1 to $${groups})`}`,
        )
    } else if (!names.includes(m[2]))
      report(path, `rewrite uses ${m[0]}, which the path regex does not capture${didYouMean(m[2], names)}`)
  }
}

/** Resolves plugin references to (name, validated config), reporting unknown names and bad configs. */
class PluginResolver {
  readonly #named = new Map<string, Readonly<Record<string, unknown>> | null>()
  readonly #loaded: LoadedFile
  readonly #options: NormalizeOptions
  readonly #problems: ConfigProblem[]
  readonly #report: Report
  /** The top-level `plugins` map failed the schema: plugins used by name cannot be checked against it. */
  readonly #namedUnknown: boolean

  constructor(
    raw: RawConfig,
    loaded: LoadedFile,
    options: NormalizeOptions,
    problems: ConfigProblem[],
    report: Report,
    valid: (path: PathSegment[]) => boolean,
  ) {
    this.#loaded = loaded
    this.#options = options
    this.#problems = problems
    this.#report = report
    this.#namedUnknown = !valid(['plugins'])
    if (this.#namedUnknown) return
    for (const [name, config] of Object.entries(raw.plugins ?? {})) {
      const at = ['plugins', name]
      if (!this.#known(name, at, true)) continue
      this.#named.set(name, valid(at) ? this.#validate(name, config, at) : null)
    }
  }

  list(refs: RawPluginRef[] | undefined, path: PathSegment[]): PluginUse[] {
    const uses: PluginUse[] = []
    const seen = new Set<string>()
    ;(refs ?? []).forEach((ref, i) => {
      const name = typeof ref === 'string' ? ref : ref.name
      const at = [...path, i]
      if (!this.#known(name, typeof ref === 'string' ? at : [...at, 'name'], false)) return
      if (seen.has(name)) {
        this.#report(at, `plugin ${name} is listed twice here`)
        return
      }
      seen.add(name)
      let config: Readonly<Record<string, unknown>> | null
      if (typeof ref !== 'string' && ref.config !== undefined)
        config = this.#validate(name, ref.config, [...at, 'config'])
      else if (this.#named.has(name)) config = this.#named.get(name) ?? null
      else if (this.#namedUnknown) config = null
      else config = this.#validate(name, {}, at, true)
      if (config !== null) uses.push({ name, config })
    })
    return uses
  }

  #known(name: string, path: PathSegment[], atKey: boolean): boolean {
    if (this.#options.plugins.has(name)) return true
    this.#report(
      path,
      `unknown plugin ${JSON.stringify(name)}${didYouMean(name, this.#options.plugins.keys())}`,
      atKey,
    )
    return false
  }

  /** `unset`: the plugin is used by name with no settings anywhere, so its defaults are what failed. */
  #validate(
    name: string,
    config: unknown,
    path: PathSegment[],
    unset = false,
  ): Readonly<Record<string, unknown>> | null {
    const definition = this.#options.plugins.get(name)!
    const validate =
      this.#options.ajv.getSchema(`plugin:${name}`) ??
      this.#options.ajv.compile({ ...definition.schema, $id: `plugin:${name}` })
    const hint = unset
      ? ` (${name} has no settings here: give them under plugins.${name} or as {name: ${name}, config: {...}})`
      : ''
    const checked = validateCopy<Record<string, unknown>>(validate, config, this.#loaded, path)
    if (checked.errors.length > 0) {
      for (const problem of schemaProblems(checked.errors, this.#loaded, path))
        this.#problems.push({ ...problem, message: problem.message + hint })
      return null
    }
    const found = definition.validate?.(checked.value as never) ?? []
    for (const [sub, message] of found) this.#report([...path, ...sub], message + hint)
    return found.length === 0 ? checked.value : null
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}
