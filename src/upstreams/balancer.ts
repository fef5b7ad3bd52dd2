/**
 * How a service picks a target. One small interface; each algorithm in its
 * own file under balancers/, all passing one contract suite
 * (balancers/contract.test.ts).
 *
 * `pick` considers only targets whose `state.selectable` is true (the
 * selection decides that from health, draining, backups and the panic
 * threshold) and not in `exclude` (targets a retry already tried). It returns
 * null when nothing can take the request; the caller answers 503.
 */
import type { RequestContext } from '../pipeline/context.ts'
import type { Target } from './target.ts'

export interface Balancer {
  pick(ctx: RequestContext, exclude?: ReadonlySet<Target>): Target | null
}
