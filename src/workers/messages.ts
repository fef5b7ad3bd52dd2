/**
 * What the main thread and the worker threads say to each other. Configs
 * cross as plain data (structured clone); each thread compiles its own
 * snapshot from them, since pools, sockets and plugin instances cannot be
 * shared between threads.
 */
import type { Config } from '../config/types.ts'

/** One target's verdict from the main thread's active health checks. */
export interface HealthEntry {
  readonly service: string
  readonly origin: string
  readonly healthy: boolean
  readonly lastCheckFailure: string | null
  /** A passing check ended a passive ejection (Envoy's successful_active_health_check_uneject_host). */
  readonly unejected: boolean
}

/** A passive ejection one thread decided, for the others (and the main thread's view). */
export interface EjectionEntry {
  readonly service: string
  readonly origin: string
  readonly forMs: number
  /** Ejections in a row, so every thread doubles the next ejection alike. */
  readonly ejections: number
}

/** Given to each worker at start (workerData). */
export interface WorkerInit {
  readonly index: number
  readonly config: Config
  readonly version: number
  /** Every target's current verdict, so a replacement agrees with the others from its first request. */
  readonly health: readonly HealthEntry[]
  /** Ports of port-0 listeners, by listener key, as the first worker bound them. */
  readonly ports: Readonly<Record<string, number>>
  readonly logLevel: string
  /** The memory Store's table, the same memory in every thread. */
  readonly store: SharedArrayBuffer
  /** TLS session ticket keys (a Buffer arrives as a Uint8Array). */
  readonly ticketKeys: Uint8Array
}

export type ToWorker =
  | {
      readonly type: 'prepare'
      readonly id: number
      readonly config: Config
      readonly version: number
      readonly ports: Readonly<Record<string, number>>
    }
  | { readonly type: 'commit'; readonly id: number }
  | { readonly type: 'abort'; readonly id: number }
  | { readonly type: 'health'; readonly entries: readonly HealthEntry[] }
  | { readonly type: 'eject'; readonly entry: EjectionEntry }
  | { readonly type: 'stats'; readonly id: number }
  | { readonly type: 'stop'; readonly graceMs: number }

/** An error as it crosses threads: enough to log it and to say why listening failed. */
export interface ErrorInfo {
  readonly message: string
  readonly code?: string
  readonly address?: string
  readonly port?: number
}

export type FromWorker =
  | {
      readonly type: 'ready'
      readonly ports: Record<string, number>
      readonly portsByName: Record<string, number>
    }
  | { readonly type: 'start-failed'; readonly error: ErrorInfo }
  | { readonly type: 'prepared'; readonly id: number; readonly ports: Record<string, number> }
  | { readonly type: 'prepare-failed'; readonly id: number; readonly error: ErrorInfo }
  | { readonly type: 'stats'; readonly id: number; readonly stats: WorkerStats }
  | { readonly type: 'stopped'; readonly cut: number }
  | { readonly type: 'ejected'; readonly entry: EjectionEntry }

export interface WorkerStats {
  /** Requests in flight on this thread. */
  readonly inflight: number
  readonly version: number
}

export function errorInfo(error: unknown): ErrorInfo {
  const e = error as NodeJS.ErrnoException & { address?: string; port?: number }
  return { message: e?.message ?? String(error), code: e?.code, address: e?.address, port: e?.port }
}

/** An Error again on the main thread, with the fields listenFailure() reads. */
export function errorFrom(info: ErrorInfo): Error {
  return Object.assign(new Error(info.message), info)
}
