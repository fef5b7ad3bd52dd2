/**
 * The built-in plugins, by name. Their order of execution is PLUGIN_ORDER in
 * pipeline/phases.ts; extensions declare theirs with `order` and are merged
 * with these by whoever starts the gateway:
 *   new Map([...builtinPlugins(), [myPlugin.name, myPlugin]])
 */
import { PLUGIN_ORDER } from '../pipeline/phases.ts'
import type { PluginDefinition } from '../pipeline/plugin.ts'
import ipRestriction from './ip-restriction/plugin.ts'
import securityHeaders from './security-headers/plugin.ts'

export function builtinPlugins(): ReadonlyMap<string, PluginDefinition<never>> {
  const all = [ipRestriction, securityHeaders] as PluginDefinition<never>[]
  for (const plugin of all)
    if (!PLUGIN_ORDER.includes(plugin.name) || plugin.order !== undefined)
      throw new Error(`built-in plugin ${plugin.name} must be listed in PLUGIN_ORDER (and declare no order)`)
  return new Map(all.map((plugin) => [plugin.name, plugin]))
}
