/**
 * The client's own failures, told apart by `code`. Socket and TLS errors
 * (ECONNREFUSED, ECONNRESET, certificate codes) reach the handler as Node
 * made them; proxy/upstream-errors.ts maps both to the client's answer.
 */
export type UpstreamFaultCode =
  | 'UPSTREAM_CONNECT_TIMEOUT'
  | 'UPSTREAM_HEADERS_TIMEOUT'
  | 'UPSTREAM_BODY_TIMEOUT'
  /** The target closed the connection before the response was complete. */
  | 'UPSTREAM_CLOSED'
  /** llhttp refused the response (`reason` holds its HPE_* code), or a 101 nobody asked for. */
  | 'UPSTREAM_BAD_RESPONSE'
  /** A method, path or field the caller gave cannot be written (CR, LF, NUL, a space in the path). */
  | 'UPSTREAM_BAD_REQUEST'
  | 'UPSTREAM_POOL_CLOSED'

export class UpstreamFault extends Error {
  readonly code: UpstreamFaultCode
  /** llhttp's error code for UPSTREAM_BAD_RESPONSE. */
  readonly reason: string | undefined

  constructor(code: UpstreamFaultCode, message: string, reason?: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'UpstreamFault'
    this.code = code
    this.reason = reason
  }
}
