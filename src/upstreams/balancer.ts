/**
 * How a service picks a target. One small interface; each algorithm in its
 * own file under balancers/. `pick` returns null when nothing can take the
 * request (the caller answers 503).
 */
import type { RequestContext } from '../pipeline/context.ts'
import type { Target } from './target.ts'

export interface Balancer {
  pick(ctx: RequestContext): Target | null
}

export type BalancerFactory = (targets: readonly Target[]) => Balancer
