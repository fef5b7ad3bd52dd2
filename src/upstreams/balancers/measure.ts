/**
 * Measuring balancers without a network: targets whose pools never connect,
 * stand-in requests that carry only what balancers read, and the two figures
 * the contract suite asserts and bench/distribution.ts prints (the share of
 * picks per target, and the share of keys a target change moves). Not used
 * by the running gateway.
 */
import type { RequestContext } from '../../pipeline/context.ts'
import type { Balancer } from '../balancer.ts'
import { UpstreamPool } from '../http1/pool.ts'
import { Target } from '../target.ts'

/** The header the hash balancers under test are keyed on. */
export const KEY_HEADER = 'x-user'

/**
 * Targets with the given weights, named by `poolKey` a, b, c... (or
 * `names`), on distinct loopback origins that nothing listens on. Their
 * state says "up for a long time" so slow start does not apply unless a
 * test says otherwise. Close them with closeTargets().
 */
export function makeTargets(weights: readonly number[], names?: readonly string[]): Target[] {
  return weights.map((weight, i) => {
    const name = names?.[i] ?? String.fromCharCode(97 + i)
    // The origin is derived from the name so a target keeps its ring points across lists.
    const origin = `http://127.0.0.1:${10_000 + nameNumber(name)}`
    const target = new Target(
      { url: origin, origin, weight, backup: false, drain: false },
      new UpstreamPool({ origin }),
      name,
    )
    target.state.upSince = Number.NEGATIVE_INFINITY
    return target
  })
}

function nameNumber(name: string): number {
  let n = 0
  for (let i = 0; i < name.length; i++) n = (n * 31 + name.charCodeAt(i)) % 50_000
  return n
}

export async function closeTargets(targets: Iterable<Target>): Promise<void> {
  await Promise.all([...targets].map((target) => target.pool.close()))
}

/**
 * A stand-in request for key number `i`: a distinct client address, path,
 * `x-user` header, `sid` cookie and `user` query parameter, typed as a
 * RequestContext (balancers read only these).
 */
export function keyedRequest(i: number): RequestContext {
  const user = `user-${i}`
  return {
    clientIp: `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`,
    path: `/items/${i}`,
    query: `user=${user}`,
    req: { headers: { [KEY_HEADER]: user, cookie: `sid=${user}` } },
  } as unknown as RequestContext
}

/** For balancers that do not look at the request. */
export const anyRequest: RequestContext = keyedRequest(0)

export interface Tally {
  /** Picks per target poolKey. */
  readonly counts: Map<string, number>
  /** Picks that returned null. */
  readonly none: number
  readonly picks: number
}

/**
 * `picks` picks; `keyed`: each pick a distinct key (hash balancers), else
 * one request over and over.
 */
export function tally(
  balancer: Balancer,
  picks: number,
  options: { keyed?: boolean; exclude?: ReadonlySet<Target> } = {},
): Tally {
  const counts = new Map<string, number>()
  let none = 0
  for (let i = 0; i < picks; i++) {
    const target = balancer.pick(options.keyed ? keyedRequest(i) : anyRequest, options.exclude)
    if (target === null) none++
    else counts.set(target.poolKey, (counts.get(target.poolKey) ?? 0) + 1)
  }
  return { counts, none, picks }
}

/** Each target's share of the picks, by poolKey, in the targets' order. */
export function shares(tally: Tally, targets: readonly Target[]): Record<string, number> {
  const result: Record<string, number> = {}
  for (const target of targets) result[target.poolKey] = (tally.counts.get(target.poolKey) ?? 0) / tally.picks
  return result
}

/** The share each target should get from its weight. */
export function expectedShares(targets: readonly Target[]): Record<string, number> {
  const total = targets.reduce((sum, target) => sum + target.weight, 0)
  const result: Record<string, number> = {}
  for (const target of targets) result[target.poolKey] = target.weight / total
  return result
}

export interface Remap {
  readonly keys: number
  /** Keys whose target differs between the two balancers. */
  readonly moved: number
  /**
   * Keys that moved from one target to another although both are in both
   * lists: consistent hashing promises none (a key moves only off a removed
   * target or onto an added one).
   */
  readonly movedNeedlessly: number
}

/** How many of `keys` distinct keys land elsewhere after the target list changes from `before` to `after`. */
export function remap(
  before: { balancer: Balancer; targets: readonly Target[] },
  after: { balancer: Balancer; targets: readonly Target[] },
  keys: number,
): Remap {
  const inBefore = new Set(before.targets)
  const inAfter = new Set(after.targets)
  let moved = 0
  let movedNeedlessly = 0
  for (let i = 0; i < keys; i++) {
    const request = keyedRequest(i)
    const was = before.balancer.pick(request)
    const is = after.balancer.pick(request)
    if (was === is) continue
    moved++
    if (was !== null && is !== null && inAfter.has(was) && inBefore.has(is)) movedNeedlessly++
  }
  return { keys, moved, movedNeedlessly }
}
