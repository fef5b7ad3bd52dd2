/**
 * The plugin contract. A plugin is a name, a config schema and a
 * `create(config, services)` returning handlers for the phases it uses, and
 * `close()`. Config is validated against `schema` (defaults applied) at load;
 * `create` runs once per attachment when a snapshot is compiled, never per
 * request. Per-request state lives on the context, never on the plugin.
 */
import type { TSchema } from '@sinclair/typebox'
import type { Logger } from 'pino'
import type { RequestContext } from './context.ts'

export interface ResponseHead {
  status: number
  /** Lower-case names. Mutable: response phases edit it in place. */
  headers: Record<string, string | string[] | number | undefined>
}

export type RequestHandler = (ctx: RequestContext) => void | Promise<void>
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
  /** After the response; always runs, cannot change it. */
  onComplete?: CompleteHandler
  close?(): void | Promise<void>
}

export interface PluginServices {
  readonly logger: Logger
}

export interface PluginDefinition<C = Record<string, unknown>> {
  readonly name: string
  /** JSON Schema (TypeBox) of the config; defaults are applied at load. */
  readonly schema: TSchema
  /** Checks that need code (e.g. CIDR syntax); returns problems as [path below config, message]. */
  validate?(config: C): [path: (string | number)[], message: string][]
  create(config: C, services: PluginServices): PluginHandlers
}

export function definePlugin<C>(definition: PluginDefinition<C>): PluginDefinition<C> {
  return definition
}
