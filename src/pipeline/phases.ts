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
 * lines in a file. A plugin not listed here cannot be registered.
 */
export const PLUGIN_ORDER: readonly string[] = [
  // Who may talk to us at all: cheapest refusal first, before any work.
  'ip-restriction',
  // Identity (api keys, JWT, OAuth2) comes next, then limits keyed on it,
  // then validation and transformation (later issues slot in here).
  // Response headers last on the way in, so first to see every answer, local ones included.
  'security-headers',
]
