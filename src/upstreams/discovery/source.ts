/** What every discovery provider (DNS, file) gives the gateway. */
import type { TargetConfig } from '../../config/types.ts'

/** Called with the whole new list, only when it differs from the last one given. */
export type OnTargets = (targets: readonly TargetConfig[]) => void

export interface DiscoverySource {
  /**
   * Begins resolving or watching; results come through OnTargets. Resolves
   * once the first attempt is over, whether it found targets or failed.
   */
  start(): Promise<void>
  /** Stops timers, queries and watches; no OnTargets call after it. */
  stop(): void
}

/** One string per list, so a re-resolution that found the same targets rebuilds nothing. */
export function targetsKey(targets: readonly TargetConfig[]): string {
  return JSON.stringify(targets.map((t) => [t.url, t.weight, t.backup, t.drain]).sort())
}
