/** The built-in plugins, by name. Order of execution is PLUGIN_ORDER in pipeline/phases.ts. */
import { PLUGIN_ORDER } from '../pipeline/phases.ts'
import type { PluginDefinition } from '../pipeline/plugin.ts'
import ipRestriction from './ip-restriction/plugin.ts'
import securityHeaders from './security-headers/plugin.ts'

export function builtinPlugins(): ReadonlyMap<string, PluginDefinition<never>> {
  const all = [ipRestriction, securityHeaders] as PluginDefinition<never>[]
  for (const plugin of all)
    if (!PLUGIN_ORDER.includes(plugin.name))
      throw new Error(`plugin ${plugin.name} is missing from PLUGIN_ORDER`)
  return new Map(all.map((plugin) => [plugin.name, plugin]))
}
