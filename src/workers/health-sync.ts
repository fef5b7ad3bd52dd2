/**
 * Health verdicts cross threads as plain entries: the main thread runs the
 * active checks once and every worker applies the same verdicts, so all
 * threads agree on which targets are up.
 */
import type { Runtime } from '../runtime/runtime.ts'
import { ejectedCount, maxEjectedTargets } from '../upstreams/health/passive.ts'
import type { UpstreamService } from '../upstreams/service.ts'
import type { Target } from '../upstreams/target.ts'
import type { EjectionEntry, HealthEntry } from './messages.ts'

export function healthEntry(service: UpstreamService, target: Target, unejected = false): HealthEntry {
  return {
    service: service.config.name,
    origin: target.origin,
    healthy: target.state.healthy,
    lastCheckFailure: target.state.lastCheckFailure,
    unejected,
  }
}

/** Every target's verdict in a snapshot (for a worker that starts or prepares a new snapshot). */
export function healthTable(runtime: Runtime): HealthEntry[] {
  const out: HealthEntry[] = []
  for (const service of runtime.services.values())
    for (const target of service.targets) out.push(healthEntry(service, target))
  return out
}

/** Applies verdicts to a worker's snapshot; the selections of the services touched are updated once. */
export function applyHealth(runtime: Runtime, entries: readonly HealthEntry[]): void {
  const now = performance.now()
  const touched = new Set<UpstreamService>()
  for (const entry of entries) {
    const service = runtime.services.get(entry.service)
    const target = service?.targets.find((t) => t.origin === entry.origin)
    if (service === undefined || target === undefined) continue
    const state = target.state
    if (entry.unejected && state.ejectedUntil > now) {
      state.ejectedUntil = 0
      touched.add(service)
    }
    state.lastCheckFailure = entry.lastCheckFailure
    if (state.healthy === entry.healthy) continue
    state.healthy = entry.healthy
    state.streak = 0
    touched.add(service)
  }
  for (const service of touched) service.selection.update(now)
}

/**
 * Applies another thread's passive ejection, within this thread's cap on
 * ejected targets; a target already ejected here keeps its own ejection.
 */
export function applyEjection(runtime: Runtime, entry: EjectionEntry): void {
  const service = runtime.services.get(entry.service)
  const passive = service?.config.healthCheck.passive
  const target = service?.targets.find((t) => t.origin === entry.origin)
  if (service === undefined || target === undefined || passive == null) return
  const now = performance.now()
  const state = target.state
  if (state.ejectedUntil > now) return
  if (
    ejectedCount(service.targets, now) >= maxEjectedTargets(service.targets.length, passive.maxEjectedPercent)
  )
    return
  state.ejections = entry.ejections
  state.ejectedUntil = now + entry.forMs
  state.recentFailures.length = 0
  service.selection.update(now)
}
