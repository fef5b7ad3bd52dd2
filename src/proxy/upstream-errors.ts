/**
 * Upstream client and socket errors -> the problem the client gets: 502 when
 * the target refused, reset, failed TLS or answered something that is not
 * HTTP; 504 when it was too slow (RFC 9110 §15.6.3, §15.6.5).
 */
import { GatehouseError } from '../errors.ts'

/** Node's TLS errors and OpenSSL's verification results (X509_V_ERR_* names, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE). */
const TLS_FAILURE = /^ERR_(TLS|SSL|OSSL)_|CERT|SELF_SIGNED|^UNABLE_TO_|^HOSTNAME_MISMATCH$/

export function upstreamError(error: unknown, origin: string): GatehouseError {
  if (error instanceof GatehouseError) return error
  const cause = { cause: error }
  const code = (error as { code?: unknown } | null)?.code
  const name = typeof code === 'string' ? code : ''
  switch (name) {
    case 'UPSTREAM_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return new GatehouseError('GH_UPSTREAM_TIMEOUT', `Connecting to ${origin} timed out`, cause)
    case 'UPSTREAM_HEADERS_TIMEOUT':
      return new GatehouseError('GH_UPSTREAM_TIMEOUT', `${origin} did not send a response in time`, cause)
    case 'UPSTREAM_BODY_TIMEOUT':
      return new GatehouseError('GH_UPSTREAM_TIMEOUT', `${origin} stopped sending the response body`, cause)
    case 'ECONNREFUSED':
      return new GatehouseError('GH_UPSTREAM_UNREACHABLE', `${origin} refused the connection`, cause)
    case 'UPSTREAM_BAD_RESPONSE':
      return new GatehouseError('GH_UPSTREAM_BAD_RESPONSE', `${origin} sent a malformed response`, cause)
    case 'UPSTREAM_CLOSED':
    case 'ECONNRESET':
    case 'EPIPE':
      return new GatehouseError('GH_UPSTREAM_UNREACHABLE', `${origin} closed the connection`, cause)
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new GatehouseError('GH_UPSTREAM_UNREACHABLE', `${origin} cannot be reached (${name})`, cause)
    case 'UPSTREAM_BAD_REQUEST':
      // A rewrite or plugin made a request that cannot be written: ours to answer, not the target's.
      return new GatehouseError('GH_INTERNAL', (error as Error).message, cause)
  }
  if (TLS_FAILURE.test(name))
    return new GatehouseError('GH_UPSTREAM_UNREACHABLE', `TLS to ${origin} failed (${name})`, cause)
  return new GatehouseError(
    'GH_UPSTREAM_UNREACHABLE',
    `Request to ${origin} failed (${name || 'unknown error'})`,
    cause,
  )
}
