/**
 * What every balancer agrees on: which targets may take this request, and
 * a weighted random draw over them (random and ewma). Kept here so the
 * algorithms differ only in how they choose, never in whom they consider.
 */
import { effectiveWeight } from '../slow-start.ts'
import type { Target } from '../target.ts'

/** Selectable (health, draining, backups, panic: see selection.ts), with weight, and not already tried. */
export function isCandidate(target: Target, exclude: ReadonlySet<Target> | undefined): boolean {
  return target.state.selectable && target.weight > 0 && (exclude === undefined || !exclude.has(target))
}

/**
 * A draw proportional to (slow-start) weight. `fill` computes this pick's
 * weights into a buffer allocated once per balancer; `draw` takes one index,
 * optionally skipping one already drawn (power of two choices wants two
 * distinct targets).
 */
export class WeightedDraw {
  readonly #targets: readonly Target[]
  readonly #slowStartMs: number
  /** This pick's weight per target index; 0 for targets that are not candidates. */
  readonly weights: Float64Array
  #total = 0

  constructor(targets: readonly Target[], slowStartMs: number) {
    this.#targets = targets
    this.#slowStartMs = slowStartMs
    this.weights = new Float64Array(targets.length)
  }

  /** Weighs the candidates for one pick; returns how many there are. */
  fill(exclude: ReadonlySet<Target> | undefined, now: number): number {
    const targets = this.#targets
    const weights = this.weights
    let count = 0
    let total = 0
    for (let i = 0; i < targets.length; i++) {
      const target = targets[i]
      if (!isCandidate(target, exclude)) {
        weights[i] = 0
        continue
      }
      const weight = effectiveWeight(target, now, this.#slowStartMs)
      weights[i] = weight
      total += weight
      count++
    }
    this.#total = total
    return count
  }

  /** An index drawn with probability weight / total, never `skip` (-1: skip none). Call after fill() found one. */
  draw(skip: number): number {
    const weights = this.weights
    let remaining = Math.random() * (skip === -1 ? this.#total : this.#total - weights[skip])
    let last = -1
    for (let i = 0; i < weights.length; i++) {
      if (i === skip || weights[i] === 0) continue
      remaining -= weights[i]
      if (remaining < 0) return i
      last = i
    }
    // Rounding left a sliver past the end: the last candidate takes it.
    return last
  }
}
