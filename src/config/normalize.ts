/**
 * Schema-valid raw data -> the normalized Config, checking what a schema
 * cannot: cross-references (unknown service or plugin, duplicate route or
 * listener), plugin configs against their own schemas, files that must be
 * readable (certificates, CAs), regexes that must compile. Every problem is
 * collected with its path; nothing stops at the first.
 */
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { createSecureContext } from 'node:tls'
import type { Ajv } from 'ajv'
import type { PluginDefinition } from '../pipeline/plugin.ts'
import type { LoadedFile } from './load.ts'
import { type ConfigProblem, didYouMean, formatPath, type PathSegment } from './problems.ts'
import type { RawConfig, RawListener, RawPluginRef, RawRoute, RawService } from './schema.ts'
import { schemaProblems } from './schema-errors.ts'
import type {
  CertificateConfig,
  Config,
  LimitsConfig,
  ListenerConfig,
  PluginUse,
  RouteConfig,
  ServiceConfig,
  StringMatchConfig,
  TargetConfig,
  TerminalConfig,
} from './types.ts'
import { parseDuration, parseSize } from './units.ts'

export interface NormalizeOptions {
  plugins: ReadonlyMap<string, PluginDefinition<never>>
  ajv: Ajv
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
      message,
    })
  const baseDir = dirname(resolve(loaded.file))
  const plugins = new PluginResolver(raw, loaded, options, problems, report)

  const listeners = (raw.listeners ?? []).map((l, i) =>
    normalizeListener(l, ['listeners', i], baseDir, report),
  )
  const seenPorts = new Map<string, number>()
  listeners.forEach((l, i) => {
    const key = `${l.host}:${l.port}`
    const first = seenPorts.get(key)
    if (first !== undefined && l.port !== 0)
      report(['listeners', i, 'port'], `port ${l.port} on ${l.host} is already used by listeners[${first}]`)
    else seenPorts.set(key, i)
  })

  const services: Record<string, ServiceConfig> = {}
  for (const [name, service] of Object.entries(raw.services ?? {})) {
    services[name] = normalizeService(name, service, ['services', name], baseDir, plugins, report)
  }

  const routes = (raw.routes ?? []).map((r, i) => normalizeRoute(r, i, services, plugins, report))
  const seenRoutes = new Map<string, number>()
  routes.forEach((route, i) => {
    const key = JSON.stringify([
      route.hosts,
      route.path,
      route.pathMatch,
      route.methods,
      route.headers,
      route.query,
    ])
    const first = seenRoutes.get(key)
    if (first !== undefined)
      report(
        ['routes', i],
        `duplicate route: same host, path, methods and conditions as routes[${first}], which always wins`,
      )
    else seenRoutes.set(key, i)
  })

  const global = raw.global ?? {}
  const trustedProxies = global.trustedProxies ?? []
  trustedProxies.forEach((cidr, i) => {
    if (!isCidr(cidr))
      report(
        ['global', 'trustedProxies', i],
        `expected an IP address or CIDR range, got ${JSON.stringify(cidr)}`,
      )
  })
  const accessLog = raw.accessLog ?? 'stdout'
  const config: Config = {
    listeners,
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
  }
  if (problems.length > 0) return { problems }
  return { config: deepFreeze(config), problems }
}

type Report = (path: PathSegment[], message: string, atKey?: boolean) => void

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
    report(path, `cannot read ${what} file ${file} (${(error as NodeJS.ErrnoException).code ?? error})`)
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
  const targets: TargetConfig[] = raw.targets.map((t, i) => {
    const url = typeof t === 'string' ? t : t.url
    const weight = typeof t === 'string' ? 1 : (t.weight ?? 1)
    const at = typeof t === 'string' ? [...path, 'targets', i] : [...path, 'targets', i, 'url']
    return { url, origin: targetOrigin(url, at, report), weight }
  })
  const caFile = raw.tls?.ca === undefined ? null : resolve(baseDir, raw.tls.ca)
  const ca = caFile === null ? null : readText(caFile, [...path, 'tls', 'ca'], 'CA', report)
  return {
    name,
    targets,
    balancer: raw.balancer ?? 'round-robin',
    timeouts: {
      connectMs: parseDuration(raw.timeouts?.connect ?? '5s'),
      responseMs: parseDuration(raw.timeouts?.response ?? '60s'),
      idleMs: parseDuration(raw.timeouts?.idle ?? '60s'),
    },
    pool: {
      connections: raw.pool?.connections ?? 128,
      keepAliveTimeoutMs: parseDuration(raw.pool?.keepAliveTimeout ?? '4s'),
    },
    tls: { caFile, ca, serverName: raw.tls?.serverName ?? null, verify: raw.tls?.verify ?? true },
    plugins: plugins.list(raw.plugins, [...path, 'plugins']),
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
    report(path, `target must be http:// or https://, got ${parsed.protocol}`)
  else if ((parsed.pathname !== '/' && parsed.pathname !== '') || parsed.search || parsed.hash)
    report(path, "target URL must not have a path or query; use the route's rewrite to change the path")
  return parsed.origin
}

function normalizeRoute(
  raw: RawRoute,
  index: number,
  services: Record<string, ServiceConfig>,
  plugins: PluginResolver,
  report: Report,
): RouteConfig {
  const path: PathSegment[] = ['routes', index]
  const pathMatch = raw.pathMatch ?? 'prefix'
  if (pathMatch === 'regex') {
    if (!raw.path.startsWith('^')) report([...path, 'path'], 'a regex path must be anchored: start it with ^')
    checkRegex(raw.path, [...path, 'path'], report)
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
    if (!services[raw.service])
      report(
        [...path, 'service'],
        `unknown service ${JSON.stringify(raw.service)}${didYouMean(raw.service, Object.keys(services))}`,
      )
    terminal = { kind: 'proxy', service: raw.service }
  } else if (raw.redirect !== undefined) {
    terminal = { kind: 'redirect', to: raw.redirect.to, status: raw.redirect.status ?? 302 }
  } else if (raw.respond !== undefined) {
    const body = raw.respond.body
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(raw.respond.headers ?? {})) headers[k.toLowerCase()] = v
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
  if (raw.rewrite !== undefined && pathMatch !== 'regex') {
    const known = new Set([...raw.path.matchAll(/:([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]))
    for (const m of raw.rewrite.matchAll(/:([A-Za-z_][A-Za-z0-9_]*)/g))
      if (!known.has(m[1]))
        report(
          [...path, 'rewrite'],
          `rewrite uses :${m[1]}, which the path does not capture${didYouMean(m[1], known)}`,
        )
  }
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
    const key = lowerCaseNames ? name.toLowerCase() : name
    if (typeof match === 'string') out[key] = { equals: match }
    else if ('regex' in match) {
      checkRegex(match.regex, [...path, name, 'regex'], report)
      out[key] = { regex: match.regex }
    } else out[key] = { present: match.present }
  }
  return out
}

function checkRegex(source: string, path: PathSegment[], report: Report): void {
  try {
    new RegExp(source)
  } catch (error) {
    report(path, `invalid regular expression: ${(error as Error).message}`)
  }
}

function isCidr(text: string): boolean {
  const [address, bits, extra] = text.split('/')
  if (extra !== undefined) return false
  const v4 = /^(\d{1,3})(\.\d{1,3}){3}$/.test(address) && address.split('.').every((o) => Number(o) <= 255)
  const v6 = !v4 && address.includes(':') && /^[0-9a-fA-F:.]+$/.test(address)
  if (!v4 && !v6) return false
  if (bits === undefined) return true
  return /^\d+$/.test(bits) && Number(bits) <= (v4 ? 32 : 128)
}

/** Resolves plugin references to (name, validated config), reporting unknown names and bad configs. */
class PluginResolver {
  readonly #named = new Map<string, Readonly<Record<string, unknown>> | null>()
  readonly #raw: RawConfig
  readonly #loaded: LoadedFile
  readonly #options: NormalizeOptions
  readonly #problems: ConfigProblem[]
  readonly #report: Report

  constructor(
    raw: RawConfig,
    loaded: LoadedFile,
    options: NormalizeOptions,
    problems: ConfigProblem[],
    report: Report,
  ) {
    this.#raw = raw
    this.#loaded = loaded
    this.#options = options
    this.#problems = problems
    this.#report = report
    for (const name of Object.keys(raw.plugins ?? {})) {
      const at = ['plugins', name]
      if (!this.#known(name, at, true)) continue
      this.#named.set(name, this.#validate(name, raw.plugins?.[name] ?? {}, at))
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
      else config = this.#validate(name, {}, at)
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

  #validate(name: string, config: unknown, path: PathSegment[]): Readonly<Record<string, unknown>> | null {
    const definition = this.#options.plugins.get(name)!
    const validate =
      this.#options.ajv.getSchema(`plugin:${name}`) ??
      this.#options.ajv.compile({ ...definition.schema, $id: `plugin:${name}` })
    const copy = structuredClone(config) as Record<string, unknown>
    if (!validate(copy)) {
      const relocated = { ...this.#loaded, data: this.#raw }
      this.#problems.push(...schemaProblems(validate.errors ?? [], relocated, path))
      return null
    }
    const found = definition.validate?.(copy as never) ?? []
    for (const [sub, message] of found) this.#report([...path, ...sub], message)
    return found.length === 0 ? copy : null
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}
