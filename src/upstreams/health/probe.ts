/**
 * One active health check of one target: an HTTP request or a TCP connect,
 * passed or failed (with the reason, for the log and the admin API).
 *
 * Each probe opens its own connection (`agent: false`, `Connection: close`),
 * as HAProxy's checks do: a probe must not queue behind the traffic in the
 * target's pool, and a target that stopped accepting connections must fail
 * even while old keep-alive connections still answer.
 */
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { connect } from 'node:net'
import type { ActiveHealthConfig, ServiceConfig } from '../../config/types.ts'
import type { Target } from '../target.ts'

export type ProbeResult = { readonly ok: true } | { readonly ok: false; readonly reason: string }

/** Checks `target` once; resolves (never rejects) when it passed, failed, timed out or `signal` aborted it. */
export type Probe = (target: Target, signal: AbortSignal) => Promise<ProbeResult>

/** How much of a body `bodyMatch` looks at: a health page is small; a stream must not be read forever. */
const BODY_LIMIT = 64 * 1024

const PASSED: ProbeResult = { ok: true }

/** The probe a service's check config describes, compiled once (status set, body regex). */
export function createProbe(check: ActiveHealthConfig, tls: ServiceConfig['tls']): Probe {
  return check.type === 'tcp' ? tcpProbe(check.timeoutMs) : httpProbe(check, tls)
}

function httpProbe(check: ActiveHealthConfig, tls: ServiceConfig['tls']): Probe {
  const expected = check.expectStatus === null ? null : new Set(check.expectStatus)
  const bodyMatch = check.bodyMatch === null ? null : new RegExp(check.bodyMatch)
  const statusOk = (status: number) =>
    expected === null ? status >= 200 && status <= 399 : expected.has(status)

  return (target, signal) =>
    settleOnce(check.timeoutMs, signal, (finish) => {
      const url = new URL(target.origin)
      const secure = url.protocol === 'https:'
      const options: RequestOptions & { servername?: string; ca?: string; rejectUnauthorized?: boolean } = {
        host: bareHost(url.hostname),
        port: url.port || (secure ? 443 : 80),
        method: check.method,
        path: check.path,
        headers: { host: check.host ?? target.host, 'user-agent': 'gatehouse-health-check' },
        agent: false,
      }
      if (secure) {
        // The service's upstream TLS settings, as for its traffic (target.ts createPool); '' keeps
        // Node from taking SNI from the Host header (RFC 6066 §3: no SNI for an IP address).
        options.servername = target.serverName ?? ''
        options.rejectUnauthorized = tls.verify
        if (tls.ca !== null) options.ca = tls.ca
      }
      const req = (secure ? httpsRequest : httpRequest)(options, (res) => {
        res.on('error', () => {})
        const status = res.statusCode ?? 0
        if (!statusOk(status)) return finish({ ok: false, reason: `status ${status}` })
        if (bodyMatch === null) return finish(PASSED)
        readBody(res, (body) =>
          finish(bodyMatch.test(body) ? PASSED : { ok: false, reason: `body does not match ${bodyMatch}` }),
        )
      })
      req.on('error', (error) => finish({ ok: false, reason: errorReason(error) }))
      req.end()
      return () => req.destroy()
    })
}

function tcpProbe(timeoutMs: number): Probe {
  return (target, signal) =>
    settleOnce(timeoutMs, signal, (finish) => {
      const url = new URL(target.origin)
      const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
      const socket = connect({ host: bareHost(url.hostname), port })
      socket.once('connect', () => finish(PASSED))
      socket.on('error', (error) => finish({ ok: false, reason: errorReason(error) }))
      return () => socket.destroy()
    })
}

/**
 * Runs `start` and resolves with the first result it reports, or a failure
 * when `timeoutMs` passes or `signal` aborts; then calls the cleanup `start`
 * returned (closing the connection).
 */
function settleOnce(
  timeoutMs: number,
  signal: AbortSignal,
  start: (finish: (result: ProbeResult) => void) => () => void,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false
    let cleanup: (() => void) | null = null
    const finish = (result: ProbeResult) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      cleanup?.()
      resolve(result)
    }
    const onAbort = () => finish({ ok: false, reason: 'stopped' })
    const timer = setTimeout(
      () => finish({ ok: false, reason: `no answer within ${timeoutMs}ms` }),
      timeoutMs,
    )
    signal.addEventListener('abort', onAbort, { once: true })
    cleanup = start(finish)
    // The start callback may have finished synchronously, before cleanup was known.
    if (settled) cleanup()
    else if (signal.aborted) onAbort()
  })
}

function readBody(res: IncomingMessage, done: (body: string) => void): void {
  let body = ''
  res.setEncoding('utf8')
  res.on('data', (chunk: string) => {
    body += chunk
    if (body.length >= BODY_LIMIT) done(body.slice(0, BODY_LIMIT))
  })
  res.on('end', () => done(body))
}

function errorReason(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code
  return code === undefined ? error.message : `${code}: ${error.message}`
}

function bareHost(hostname: string): string {
  return hostname.replace(/^\[|\]$/g, '')
}
