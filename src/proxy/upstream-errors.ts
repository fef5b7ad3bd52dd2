/** undici and socket errors -> the problem the client gets (502 refused/reset/bad, 504 slow). */
import { GatehouseError } from '../errors.ts'

export function upstreamError(error: unknown, origin: string): GatehouseError {
  const code = (error as { code?: string }).code ?? ''
  const cause = { cause: error }
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new GatehouseError('GH_UPSTREAM_TIMEOUT', `Connecting to ${origin} timed out`, cause)
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new GatehouseError('GH_UPSTREAM_TIMEOUT', `${origin} did not send a response in time`, cause)
    case 'UND_ERR_BODY_TIMEOUT':
      return new GatehouseError('GH_UPSTREAM_TIMEOUT', `${origin} stopped sending the response body`, cause)
    case 'ECONNREFUSED':
      return new GatehouseError('GH_UPSTREAM_UNREACHABLE', `${origin} refused the connection`, cause)
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED':
      return new GatehouseError('GH_UPSTREAM_UNREACHABLE', `${origin} closed the connection`, cause)
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new GatehouseError('GH_UPSTREAM_UNREACHABLE', `${origin} cannot be reached (${code})`, cause)
  }
  if (code.startsWith('HPE_') || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_INFO')
    return new GatehouseError('GH_UPSTREAM_BAD_RESPONSE', `${origin} sent a malformed response`, cause)
  if (code.startsWith('ERR_TLS') || code.includes('CERT') || code === 'DEPTH_ZERO_SELF_SIGNED_CERT')
    return new GatehouseError('GH_UPSTREAM_UNREACHABLE', `TLS to ${origin} failed (${code})`, cause)
  return new GatehouseError(
    'GH_UPSTREAM_UNREACHABLE',
    `Request to ${origin} failed (${code || 'unknown error'})`,
    cause,
  )
}
