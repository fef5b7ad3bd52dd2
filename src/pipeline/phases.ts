/**
 * The request lifecycle, as one named list (DESIGN.md, STYLE.md). A plugin
 * implements the phases it needs; a route's chain for a phase with no
 * handlers is null and costs nothing.
 *
 *   accept -> route -> onRequest -> authenticate -> authorize -> transformRequest
 *   -> handle -> onUpstreamResponse -> transformResponse -> onComplete
 *
 * Request phases run in plugin order, response phases in reverse (as Envoy's
 * filters do), so the plugin that saw the request first sees the response last.
 */
export const REQUEST_PHASES = ['onRequest', 'authenticate', 'authorize', 'transformRequest'] as const
export const RESPONSE_PHASES = ['onUpstreamResponse', 'transformResponse'] as const

export type RequestPhase = (typeof REQUEST_PHASES)[number]
export type ResponsePhase = (typeof RESPONSE_PHASES)[number]

/**
 * Order of plugins within every phase: one commented list, not the order of
 * lines in a file. This list is the only place the built-ins' order is
 * decided; a plugin named here takes this place and may not declare another.
 * A plugin not named here (an extension, a test plugin) must declare its
 * place next to one that is (`order: {after: 'ip-restriction'}`), see
 * resolvePluginOrder.
 */
export const PLUGIN_ORDER: readonly string[] = [
  // Who may talk to us at all: cheapest refusal first, before any work.
  'ip-restriction',
  // Identity (api keys, JWT, OAuth2) comes next, then limits keyed on it,
  // then validation and transformation (later issues slot in here).
  // Response headers last on the way in, so first to see every answer, local ones included.
  'security-headers',
]

/**
 * Where a plugin missing from PLUGIN_ORDER runs: next to the plugin it names,
 * on that side (plugins anchored to it in turn sit next to it, and so on).
 */
export type PluginSlot = { readonly before: string } | { readonly after: string }

/**
 * The complete order for a set of plugins: PLUGIN_ORDER, with every other
 * plugin placed next to the plugin its `order` names (a listed one or another
 * extension, so extensions can chain). Each side of a plugin holds at most one
 * extension: two plugins claiming the same place would leave their order to
 * chance (the order of registration), so that is refused like any unplaceable
 * plugin. Throws an Error naming the plugin; this is a programming error of
 * whoever registers plugins, not a config problem.
 */
export function resolvePluginOrder(
  plugins: Iterable<{ readonly name: string; readonly order?: PluginSlot }>,
): readonly string[] {
  const listed = new Set(PLUGIN_ORDER)
  const before = new Map<string, string>()
  const after = new Map<string, string>()
  const anchors = new Map<string, string>()
  for (const { name, order } of plugins) {
    if (listed.has(name)) {
      if (order !== undefined)
        throw new Error(`plugin ${name} is in PLUGIN_ORDER and cannot declare another place (order)`)
      continue
    }
    if (order === undefined)
      throw new Error(
        `plugin ${name} has no place in the plugin order: add it to PLUGIN_ORDER (built-ins) or give it order: {before|after: <plugin>}`,
      )
    const [side, anchor] = 'before' in order ? [before, order.before] : [after, order.after]
    const taken = side.get(anchor)
    if (taken !== undefined)
      throw new Error(
        `plugins ${taken} and ${name} both claim the place ${side === before ? 'before' : 'after'} ${anchor}; anchor one to the other`,
      )
    side.set(anchor, name)
    anchors.set(name, anchor)
  }
  // In-order walk: what sits before a plugin, the plugin, what sits after it.
  const out: string[] = []
  const place = (name: string) => {
    const first = before.get(name)
    if (first !== undefined) place(first)
    out.push(name)
    const next = after.get(name)
    if (next !== undefined) place(next)
  }
  for (const name of PLUGIN_ORDER) place(name)
  const placed = new Set(out)
  for (const [name, anchor] of anchors)
    if (!placed.has(name))
      throw new Error(
        `plugin ${name} is placed next to ${anchor}, which is neither in PLUGIN_ORDER nor placed itself (unknown name or a cycle)`,
      )
  return out
}
