/**
 * The plugin contract. A plugin is a name, a config schema and a
 * `create(config, services)` returning handlers for the phases it uses, and
 * `close()`. Config is validated against `schema` (defaults applied) at load;
 * `create` runs once per attachment when a snapshot is compiled, never per
 * request. Per-request state lives on the context (`ctx.locals`), never on
 * the plugin. docs/plugins.md is the long form.
 */
import type { TSchema } from '@sinclair/typebox'
import type { Logger } from 'pino'
import type { Store } from '../stores/store.ts'
import type { RequestContext } from './context.ts'
import type { PluginSlot } from './phases.ts'

export interface ResponseHead {
  status: number
  /** Lower-case names. Mutable: response phases edit it in place. */
  headers: Record<string, string | string[] | number | undefined>
}

/** May answer locally (sendLocal / throw GatehouseError); a returned promise is awaited. */
export type RequestHandler = (ctx: RequestContext) => void | Promise<void>
/** Synchronous: the response head is on its way and is not held for I/O. */
export type ResponseHandler = (ctx: RequestContext, head: ResponseHead) => void
export type CompleteHandler = (ctx: RequestContext) => void

export interface PluginHandlers {
  onRequest?: RequestHandler
  authenticate?: RequestHandler
  authorize?: RequestHandler
  transformRequest?: RequestHandler
  /** Only for responses from a target. */
  onUpstreamResponse?: ResponseHandler
  /** Every response head, from a target or made by Gatehouse (errors included). */
  transformResponse?: ResponseHandler
  /** After the response (or the client's abort); always runs, cannot change it. Errors are logged. */
  onComplete?: CompleteHandler
  /** Called once when the snapshot that created these handlers is retired, or when compiling it failed. */
  close?(): void | Promise<void>
}

export interface PluginServices {
  /** A child logger with `plugin: <name>`. */
  readonly logger: Logger
  /**
   * State shared by every thread (and, with a network store, every instance):
   * counters with expiry, values with TTL, compare-and-set (docs/store.md).
   * The same store across reloads: a plugin never keeps its own global Map.
   */
  readonly store: Store
}

export interface PluginDefinition<C = Record<string, unknown>> {
  readonly name: string
  /**
   * Only for plugins not in PLUGIN_ORDER (extensions, tests): the place in
   * the order, next to a named plugin. Built-ins take theirs from the list.
   */
  readonly order?: PluginSlot
  /** JSON Schema (TypeBox) of the config; defaults are applied at load. */
  readonly schema: TSchema
  /** Checks that need code (e.g. CIDR syntax); returns problems as [path below config, message]. */
  validate?(config: C): [path: (string | number)[], message: string][]
  /**
   * Runs once per attachment when a snapshot is compiled. If it throws, the
   * snapshot is refused and the plugins created before it are closed; a
   * create that throws must release what it already acquired itself.
   */
  create(config: C, services: PluginServices): PluginHandlers
}

export function definePlugin<C>(definition: PluginDefinition<C>): PluginDefinition<C> {
  return definition
}
