/**
 * Config -> Runtime. Everything a request needs is resolved here, once:
 * routes with their matchers and phase chains, services with targets and
 * balancers, TLS contexts. Pools and the access log of the previous snapshot
 * carry over when their definition did not change. If compiling fails, what
 * was created is closed and the previous snapshot is untouched.
 */
import { createSecureContext, type SecureContext } from 'node:tls'
import type { Logger } from 'pino'
import type { Config, ListenerConfig, PluginUse, RouteConfig, StringMatchConfig } from '../config/types.ts'
import { createIpMatcher } from '../net/ip.ts'
import { createAccessLog } from '../observability/access-log.ts'
import { resolvePluginOrder } from '../pipeline/phases.ts'
import type { PluginDefinition, PluginHandlers } from '../pipeline/plugin.ts'
import { compilePath } from '../routing/path-pattern.ts'
import { Router, type ValueMatcher } from '../routing/router.ts'
import type { Store } from '../stores/store.ts'
import { createBalancer } from '../upstreams/balancers/index.ts'
import { createCircuit } from '../upstreams/breaker.ts'
import { type EjectionListener, passiveObservers } from '../upstreams/health/passive.ts'
import type { Dispatcher } from '../upstreams/http1/handler.ts'
import { recordLatency } from '../upstreams/latency.ts'
import { UpstreamService } from '../upstreams/service.ts'
import { createSticky } from '../upstreams/sticky.ts'
import { createPool, poolKey, serverNameFor, Target } from '../upstreams/target.ts'
import type { TargetState } from '../upstreams/target-state.ts'
import type { CompiledListener, CompiledRoute, CompiledService, PhaseChains, Runtime } from './runtime.ts'

export interface CompileOptions {
  plugins: ReadonlyMap<string, PluginDefinition<never>>
  logger: Logger
  previous: Runtime | null
  version: number
  /** Told of each passive ejection (a worker thread tells the others through the main thread). */
  onEject?: EjectionListener
  /** The store plugins share, the same for every snapshot and thread. */
  store: Store
  /**
   * TLS session ticket keys (48 bytes), the same for every snapshot and
   * thread, so a client resumes its session whichever thread its next
   * connection reaches, and after a reload.
   */
  ticketKeys: Buffer
}

export function compile(config: Config, options: CompileOptions): Runtime {
  const instances: PluginHandlers[] = []
  // Pools are shared by every target with the same connection settings (two
  // services naming one origin share its connections) and taken over from the
  // previous snapshot; health state is per service and target.
  const previousPools = new Map<string, Dispatcher>()
  const previousStates = new Map<string, TargetState>()
  for (const service of options.previous?.services.values() ?? [])
    for (const target of service.targets) {
      previousPools.set(target.poolKey, target.pool)
      previousStates.set(`${service.config.name}\0${target.origin}`, target.state)
    }
  const pools = new Map<string, Dispatcher>()
  const createdPools: Dispatcher[] = []

  try {
    const rank = pluginRanks(options.plugins)
    // One create per attachment (a plugin on three routes is three instances), in file order.
    const instantiate = (uses: readonly PluginUse[], where: string): Attached[] =>
      uses.map((use) => {
        const definition = options.plugins.get(use.name)!
        let handlers: PluginHandlers
        try {
          handlers = definition.create(use.config as never, {
            logger: options.logger.child({ plugin: use.name }),
            store: options.store,
          })
        } catch (error) {
          throw new Error(`plugin ${use.name} (${where}) failed to start: ${(error as Error).message}`, {
            cause: error,
          })
        }
        instances.push(handlers)
        return { name: use.name, rank: rank.get(use.name)!, handlers }
      })
    const globalPlugins = instantiate(config.global.plugins, 'global')

    const services = new Map<string, CompiledService>()
    const servicePlugins = new Map<string, Attached[]>()
    for (const [name, service] of Object.entries(config.services)) {
      const targets = service.targets.map((targetConfig) => {
        const key = poolKey(targetConfig, service)
        let pool = pools.get(key) ?? previousPools.get(key)
        if (pool === undefined) {
          pool = createPool(targetConfig, service)
          createdPools.push(pool)
        }
        pools.set(key, pool)
        // Keyed by origin, not pool settings: a new pool size must not forget that a target is down.
        const state = previousStates.get(`${name}\0${targetConfig.origin}`)
        return new Target(targetConfig, pool, key, serverNameFor(targetConfig, service), state)
      })
      const upstream = new UpstreamService(service, targets, (selection) => ({
        balancer: createBalancer(targets, service),
        sticky: createSticky(service, targets, options.previous?.services.get(name)?.sticky ?? null),
        observers: [
          recordLatency,
          ...passiveObservers(service, targets, selection, options.logger, options.onEject),
        ],
        circuit: createCircuit(
          service,
          targets,
          selection,
          options.previous?.services.get(name)?.circuit ?? null,
        ),
      }))
      services.set(name, upstream)
      servicePlugins.set(name, instantiate(service.plugins, `service ${name}`))
    }

    const routes = config.routes.map((route): CompiledRoute => {
      const service = route.terminal.kind === 'proxy' ? (services.get(route.terminal.service) ?? null) : null
      const routePlugins = instantiate(route.plugins, `route ${route.name}`)
      const path = compilePath(route.path, route.pathMatch)
      return {
        index: route.index,
        name: route.name,
        config: route,
        hosts: route.hosts,
        path,
        methods: route.methods === null ? null : new Set(route.methods),
        headers: Object.entries(route.headers).map(([name, m]) => [name, valueMatcher(m)] as const),
        query: Object.entries(route.query).map(([name, m]) => [name, valueMatcher(m)] as const),
        service,
        chains: buildChains(
          globalPlugins,
          route.terminal.kind === 'proxy' ? (servicePlugins.get(route.terminal.service) ?? []) : [],
          routePlugins,
        ),
        maxBodySize: route.maxBodySize,
        rewritePath: pathRewriter(route),
      }
    })

    const listeners = new Map<string, CompiledListener>()
    config.listeners.forEach((listener, i) => {
      const key = listenerKey(listener, i)
      listeners.set(key, compileListener(listener, key, options.ticketKeys))
    })

    const accessLog =
      options.previous && options.previous.accessLog.key === JSON.stringify(config.accessLog)
        ? options.previous.accessLog
        : createAccessLog(config.accessLog, options.logger)

    let retired: Promise<void> | null = null
    const runtime: Runtime = {
      config,
      version: options.version,
      router: new Router(routes),
      routes,
      services,
      listeners,
      globalChains: buildChains(globalPlugins, [], []),
      trustedProxies: createIpMatcher(config.global.trustedProxies),
      accessLog,
      logger: options.logger,
      inflight: 0,
      /**
       * Called when a newer snapshot takes over (next = null at shutdown):
       * waits for this snapshot's requests, then closes its plugins and the
       * pools and access log that the successor did not take over.
       */
      retire() {
        retired ??= (async () => {
          await waitFor(() => runtime.inflight === 0)
          await closePlugins(instances, options.logger)
        })()
        return retired
      },
    }
    return runtime
  } catch (error) {
    void closePlugins(instances, options.logger)
    for (const pool of createdPools) void pool.destroy().catch(() => {})
    throw error
  }
}

/** Listeners are known by address; port-0 listeners (tests) by position, as each gets its own port. */
export function listenerKey(listener: ListenerConfig, index: number): string {
  return listener.port === 0 ? `${listener.host}:0#${index}` : `${listener.host}:${listener.port}`
}

/** Pools and access logs of `old` not taken over by `next` (null at shutdown) are closed after old's requests end. */
export async function releaseUnshared(old: Runtime, next: Runtime | null): Promise<void> {
  await old.retire()
  const kept = new Set<Dispatcher>()
  for (const service of next?.services.values() ?? [])
    for (const target of service.targets) kept.add(target.pool)
  const closing: Promise<unknown>[] = []
  for (const service of old.services.values())
    for (const target of service.targets)
      if (!kept.has(target.pool)) {
        kept.add(target.pool)
        closing.push(target.pool.close())
      }
  if (next?.accessLog !== old.accessLog) closing.push(old.accessLog.close())
  await Promise.allSettled(closing)
}

type Attached = { name: string; rank: number; handlers: PluginHandlers }

/** Plugin name -> position in the resolved order (PLUGIN_ORDER plus the extensions' declared places). */
function pluginRanks(plugins: ReadonlyMap<string, PluginDefinition<never>>): Map<string, number> {
  return new Map(resolvePluginOrder(plugins.values()).map((name, i) => [name, i]))
}

/**
 * Per plugin name the most specific attachment wins (route over service over
 * global); within a phase the order is the plugin order, never the order of
 * lines in the file. A phase without handlers is null, so it costs nothing.
 */
function buildChains(global: Attached[], service: Attached[], route: Attached[]): PhaseChains {
  const byName = new Map<string, Attached>()
  for (const attached of [...global, ...service, ...route]) byName.set(attached.name, attached)
  const ordered = [...byName.values()].sort((a, b) => a.rank - b.rank)
  const chain = <K extends keyof PhaseChains>(phase: K, reverse: boolean) => {
    const handlers = ordered.map((p) => p.handlers[phase]).filter((h) => h !== undefined)
    if (reverse) handlers.reverse()
    return (handlers.length === 0 ? null : Object.freeze(handlers)) as PhaseChains[K]
  }
  return Object.freeze({
    onRequest: chain('onRequest', false),
    authenticate: chain('authenticate', false),
    authorize: chain('authorize', false),
    transformRequest: chain('transformRequest', false),
    onUpstreamResponse: chain('onUpstreamResponse', true),
    transformResponse: chain('transformResponse', true),
    onComplete: chain('onComplete', false),
  })
}

/**
 * Closes plugin instances in reverse order of creation (the mirror of
 * create), each on its own: one that throws or rejects is logged and does
 * not keep the others open. Safe after a partial compile.
 */
async function closePlugins(instances: readonly PluginHandlers[], logger: Logger): Promise<void> {
  for (let i = instances.length - 1; i >= 0; i--) {
    const close = instances[i].close
    if (close === undefined) continue
    try {
      await close.call(instances[i])
    } catch (error) {
      logger.error({ err: error }, 'a plugin failed to close')
    }
  }
}

/**
 * A header or query condition: an exact value; a regex searched in the value
 * (JavaScript `test`: write ^...$ to match the whole value), never met by an
 * absent one; presence.
 */
export function valueMatcher(match: StringMatchConfig): ValueMatcher {
  if ('equals' in match) return (value) => value === match.equals
  if ('regex' in match) {
    const regex = new RegExp(match.regex)
    return (value) => value !== undefined && regex.test(value)
  }
  return match.present ? (value) => value !== undefined : (value) => value === undefined
}

/**
 * stripPrefix removes the matched prefix; rewrite replaces the matched part
 * (anchored: never a match further along the path, unlike an unanchored
 * `replace`) with params filled in. The unmatched rest of the path is kept;
 * the query is added by the caller. Regex routes use JavaScript's
 * replacement syntax (`$1`, `$<name>`) on their anchored match.
 */
function pathRewriter(route: RouteConfig): CompiledRoute['rewritePath'] {
  if (route.stripPrefix) return (path, matched) => joinPath('/', restAfter(path, matched))
  const rewrite = route.rewrite
  if (rewrite === null) return null
  if (route.pathMatch === 'regex') {
    const { regex } = compilePath(route.path, 'regex')
    return (path) => path.replace(regex, rewrite)
  }
  return (path, matched, params) => {
    const head = rewrite.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (_, name: string) => params[name] ?? '')
    return joinPath(head, restAfter(path, matched))
  }
}

/** What follows the matched part; a prefix written with a trailing `/` gives that `/` back to the rest. */
function restAfter(path: string, matched: string): string {
  const rest = path.slice(matched.length)
  return matched.endsWith('/') && matched.length > 1 ? `/${rest}` : rest
}

/** head + rest with exactly one `/` between them when rest is a sub-path. */
function joinPath(head: string, rest: string): string {
  if (rest === '') return head === '' ? '/' : head
  if (!rest.startsWith('/')) rest = `/${rest}`
  return head.endsWith('/') ? head + rest.slice(1) : head + rest
}

function compileListener(config: ListenerConfig, key: string, ticketKeys: Buffer): CompiledListener {
  let secureContext: CompiledListener['secureContext'] = null
  if (config.tls) {
    const exact = new Map<string, SecureContext>()
    const wildcard = new Map<string, SecureContext>()
    const contexts = config.tls.certificates.map((cert) => {
      const context = createSecureContext({
        cert: cert.certPem,
        key: cert.keyPem,
        minVersion: config.tls!.minVersion,
        ticketKeys,
      })
      // The first certificate naming a host wins, as in file order.
      for (const name of cert.serverNames) {
        const names = name.startsWith('*.') ? wildcard : exact
        const key = name.startsWith('*.') ? name.slice(1) : name
        if (!names.has(key)) names.set(key, context)
      }
      return context
    })
    const fallback =
      contexts[
        Math.max(
          0,
          config.tls.certificates.findIndex((c) => c.default),
        )
      ]
    secureContext = (servername) => {
      const name = servername.toLowerCase()
      const hit = exact.get(name)
      if (hit) return hit
      const dot = name.indexOf('.')
      return (dot > 0 ? wildcard.get(name.slice(dot)) : undefined) ?? fallback
    }
  }
  return { config, key, limits: config.limits, secureContext, ticketKeys }
}

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20))
}
