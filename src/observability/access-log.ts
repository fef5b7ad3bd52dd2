/**
 * One JSON line per request (pino): time, request id, method, host, path,
 * route, status, bytes, duration, upstream target and upstream time.
 * Buffered, asynchronous writes; flushed on close.
 */
import pino, { type Logger } from 'pino'
import type { AccessLogConfig } from '../config/types.ts'
import type { RequestContext } from '../pipeline/context.ts'

export interface AccessLog {
  readonly key: string
  write(ctx: RequestContext): void
  close(): Promise<void>
}

export function createAccessLog(config: AccessLogConfig): AccessLog {
  const key = JSON.stringify(config)
  if (config.to === 'off') return { key, write() {}, close: async () => {} }
  const destination = pino.destination({
    dest: config.to === 'file' ? config.file : config.to === 'stdout' ? 1 : 2,
    sync: false,
    mkdir: true,
    minLength: 4096,
  })
  const logger: Logger = pino(
    { base: null, messageKey: 'msg', timestamp: pino.stdTimeFunctions.isoTime },
    destination,
  )
  return {
    key,
    write(ctx) {
      logger.info({
        reqId: ctx.requestId,
        method: ctx.method,
        host: ctx.host,
        path: ctx.path,
        route: ctx.route?.name ?? null,
        status: ctx.status,
        bytes: ctx.bytesOut,
        durationMs: Math.round((performance.now() - ctx.startTime) * 100) / 100,
        client: ctx.clientIp,
        upstream: ctx.target?.origin ?? null,
        upstreamMs: ctx.upstreamTimeMs < 0 ? null : Math.round(ctx.upstreamTimeMs * 100) / 100,
        ...(ctx.error ? { error: ctx.error.code } : {}),
      })
    },
    close: () =>
      new Promise((resolve) => {
        destination.flush(() => {
          destination.end()
          resolve()
        })
      }),
  }
}
