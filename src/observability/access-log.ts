/**
 * One JSON line per request: time (when it arrived), request id, method,
 * host, path, route, status, bytes, duration, client, upstream target and
 * upstream time. Written through pino's destination (sonic-boom): writes are
 * asynchronous and coalesce while one is in flight, so a busy gateway makes
 * few syscalls and a quiet one still writes each line at once. Flushed and
 * closed by close(), which a retiring snapshot (or stop) awaits.
 */
import { mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import pino from 'pino'
import type { AccessLogConfig } from '../config/types.ts'
import type { RequestContext } from '../pipeline/context.ts'

export interface AccessLog {
  /** Two snapshots with the same key share one access log (a reload does not reopen the file). */
  readonly key: string
  write(ctx: RequestContext): void
  /** Writes what is buffered, then closes (the file; stdout and stderr stay open). */
  close(): Promise<void>
}

/** The shape of one line; docs/observability and tests read these names. */
export interface AccessLogLine {
  time: string
  reqId: string
  method: string
  host: string
  path: string
  route: string | null
  status: number
  bytes: number
  durationMs: number
  client: string
  upstream: string | null
  upstreamMs: number | null
  /** Tries sent upstream, retries included; 0 when Gatehouse answered alone. */
  attempts: number
  /** Only when Gatehouse answered with a problem. */
  error?: string
  /** Only when the response did not complete: the client went away or the connection was cut. */
  aborted?: true
}

/**
 * Opens the destination now, so a file that cannot be opened fails the load
 * (or the reload) instead of every request later.
 */
export function createAccessLog(config: AccessLogConfig, logger: Logger): AccessLog {
  const key = JSON.stringify(config)
  if (config.to === 'off') return { key, write() {}, close: async () => {} }
  let fd: number
  if (config.to === 'file') {
    try {
      mkdirSync(dirname(config.file), { recursive: true })
      fd = openSync(config.file, 'a')
    } catch (error) {
      throw new Error(`cannot open the access log ${config.file}: ${(error as Error).message}`, {
        cause: error,
      })
    }
  } else fd = config.to === 'stdout' ? 1 : 2
  const destination = pino.destination({ dest: fd, sync: false })
  let failed = false
  destination.on('error', (error: Error) => {
    // A full disk must not take the gateway down; say it once, not per line.
    if (failed) return
    failed = true
    logger.error(
      { err: error, accessLog: config },
      'writing the access log failed; later failures are not reported',
    )
  })
  const closed = new Promise<void>((resolve) => destination.once('close', () => resolve()))
  let closing = false
  return {
    key,
    write(ctx) {
      // After close (a request of an older snapshot sharing this log, cut at
      // stop) the line is dropped: sonic-boom throws on a write after end.
      if (!closing) destination.write(`${JSON.stringify(accessLogLine(ctx))}\n`)
    },
    close() {
      if (!closing) {
        closing = true
        destination.end()
      }
      return closed
    },
  }
}

export function accessLogLine(ctx: RequestContext): AccessLogLine {
  const durationMs = performance.now() - ctx.startTime
  const line: AccessLogLine = {
    time: new Date(performance.timeOrigin + ctx.startTime).toISOString(),
    reqId: ctx.requestId,
    method: ctx.method,
    host: ctx.host,
    path: ctx.path,
    route: ctx.route?.name ?? null,
    status: ctx.status,
    bytes: ctx.bytesOut,
    durationMs: round(durationMs),
    client: ctx.clientIp,
    upstream: ctx.target?.origin ?? null,
    upstreamMs: ctx.upstreamTimeMs < 0 ? null : round(ctx.upstreamTimeMs),
    attempts: ctx.attempts,
  }
  if (ctx.error !== null) line.error = ctx.error.code
  if (!ctx.res.writableFinished) line.aborted = true
  return line
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100
}
