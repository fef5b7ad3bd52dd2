/**
 * The consistent-hash ring behind `consistent-hash` and `ip-hash`: ketama
 * (libketama, nginx's `hash ... consistent`, Envoy's ring_hash).
 *
 * Why a ring and not Maglev: the promise is that adding or removing
 * one of N targets moves about 1/N of the keys *and no more*. On a ring that
 * holds exactly: a key moves only if its owner was removed or the new target
 * took its arc. Maglev's table is rebuilt by a permutation fill in which the
 * targets that stay also trade some slots, so a change moves a little more
 * than 1/N. The ring also answers the gateway's most common question, "the
 * owner is down or already tried: who next?", by walking on clockwise, which
 * spreads the orphaned keys over the remaining targets without rebuilding
 * anything; Maglev needs a rebuilt table for that. Maglev's advantages (O(1)
 * lookup, a little better balance) matter less here than a binary search
 * over a few thousand points costs (about 12 comparisons).
 *
 * Points: each target gets `weight x pointsPerWeight` points (256 per unit
 * of weight, fewer when the ring would pass RING_LIMIT points), each a 32-bit
 * slice of MD5(`origin-n`) as libketama makes them. A target's points depend
 * on its own origin and weight only, and the first k points of a target are
 * the same whatever k, so a change to the target list leaves the points of
 * every other target where they were.
 *
 * Keys are hashed per request with FNV-1a and the murmur3 finalizer: no
 * allocation, full avalanche (similar keys such as `user-1`, `user-2` land
 * far apart).
 *
 * Slow start on a ring: a ramping target keeps a key only when the key's
 * second hash, read as a fraction in [0, 1), is below the target's current
 * share of its weight; otherwise the key walks on. So a recovered target
 * gets 10% of its keys back at once and the rest as it ramps, each key
 * moving once (back) rather than flapping.
 */
import { createHash } from 'node:crypto'
import { FNV_OFFSET, FNV_PRIME, fmix32 } from '../../hash.ts'
import { effectiveWeight } from '../slow-start.ts'
import type { Target } from '../target.ts'
import { isCandidate } from './candidates.ts'

/** Points per unit of weight: about 6% standard deviation of a weight-1 target's share. */
export const POINTS_PER_WEIGHT = 256
/** Most points on one ring (8 bytes each, and one MD5 per 4 points to build). */
export const RING_LIMIT = 1 << 16

export class HashRing {
  readonly #targets: readonly Target[]
  readonly #slowStartMs: number
  /** Sorted point positions, and the index of the target owning each. */
  readonly #points: Uint32Array
  readonly #owners: Uint32Array

  constructor(targets: readonly Target[], slowStartMs = 0) {
    this.#targets = targets
    this.#slowStartMs = slowStartMs
    let totalWeight = 0
    for (const target of targets) totalWeight += Math.max(target.weight, 0)
    const perWeight = Math.min(POINTS_PER_WEIGHT, RING_LIMIT / Math.max(totalWeight, 1))
    const entries: { point: number; owner: number }[] = []
    const seen = new Map<string, number>()
    targets.forEach((target, owner) => {
      if (target.weight <= 0) return
      // Two targets with the same origin still get distinct points.
      const copies = seen.get(target.origin) ?? 0
      seen.set(target.origin, copies + 1)
      const name = copies === 0 ? target.origin : `${target.origin}#${copies}`
      const count = Math.max(1, Math.round(target.weight * perWeight))
      for (let n = 0; n * 4 < count; n++) {
        const digest = createHash('md5').update(`${name}-${n}`).digest()
        for (let k = 0; k < 4 && n * 4 + k < count; k++)
          entries.push({ point: digest.readUInt32LE(k * 4), owner })
      }
    })
    // Equal points (rare with 32 bits) are ordered by owner so every build orders them alike.
    entries.sort((a, b) => a.point - b.point || a.owner - b.owner)
    this.#points = Uint32Array.from(entries, (e) => e.point)
    this.#owners = Uint32Array.from(entries, (e) => e.owner)
  }

  /** Number of points on the ring. */
  get size(): number {
    return this.#points.length
  }

  /** The owner of `hash`, walking clockwise past targets that are not candidates (or skip it while ramping). */
  pick(hash: number, exclude: ReadonlySet<Target> | undefined): Target | null {
    const targets = this.#targets
    const slowStartMs = this.#slowStartMs
    const now = slowStartMs > 0 ? performance.now() : 0
    // Is there a candidate at all, and the largest share of its keys a ramping candidate keeps.
    let found = false
    let largestShare = 0
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]
      if (!isCandidate(target, exclude)) continue
      found = true
      if (slowStartMs <= 0) break
      largestShare = Math.max(largestShare, effectiveWeight(target, now, slowStartMs) / target.weight)
    }
    if (!found) return null
    // A key above every candidate's share (all are ramping, e.g. just after start) ignores the ramp;
    // otherwise some candidate keeps it, so the walk below ends.
    const keyShare = slowStartMs > 0 ? fmix32((hash ^ 0x9e3779b9) >>> 0) / 2 ** 32 : 1
    const ramping = keyShare < largestShare
    const points = this.#points
    const owners = this.#owners
    let position = lowerBound(points, hash)
    for (let step = 0; step < points.length; step++, position++) {
      if (position === points.length) position = 0
      const target = targets[owners[position]]
      if (!isCandidate(target, exclude)) continue
      if (!ramping || keyShare < effectiveWeight(target, now, slowStartMs) / target.weight) return target
    }
    return null
  }
}

/** Index of the first point >= hash (points.length when none: the ring wraps). */
function lowerBound(points: Uint32Array, hash: number): number {
  let low = 0
  let high = points.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (points[middle] < hash) low = middle + 1
    else high = middle
  }
  return low
}

/** 32-bit hash of a string: FNV-1a over its UTF-16 code units, then murmur3's finalizer for avalanche. */
export function hashString(text: string): number {
  let hash = FNV_OFFSET
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), FNV_PRIME)
  return fmix32(hash)
}
