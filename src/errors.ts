/**
 * Every reply Gatehouse makes itself comes from this table: a stable code, its
 * HTTP status, a title and the slug of its RFC 9457 problem `type`. Tests
 * assert on `code`; docs/errors.md is checked against this table.
 */
export const PROBLEM_TYPE_BASE = 'urn:gatehouse:problem:'

export const ERRORS = {
  GH_BAD_REQUEST: { status: 400, slug: 'bad-request', title: 'Bad request' },
  GH_FORBIDDEN: { status: 403, slug: 'forbidden', title: 'Forbidden' },
  GH_ROUTE_NOT_FOUND: { status: 404, slug: 'route-not-found', title: 'No route matches the request' },
  GH_METHOD_NOT_ALLOWED: {
    status: 405,
    slug: 'method-not-allowed',
    title: 'Method not allowed on this path',
  },
  GH_REQUEST_TIMEOUT: { status: 408, slug: 'request-timeout', title: 'Request not received in time' },
  GH_PAYLOAD_TOO_LARGE: { status: 413, slug: 'payload-too-large', title: 'Request body too large' },
  GH_URI_TOO_LONG: { status: 414, slug: 'uri-too-long', title: 'Request URL too long' },
  GH_EXPECTATION_FAILED: { status: 417, slug: 'expectation-failed', title: 'Expectation not supported' },
  GH_HEADERS_TOO_LARGE: {
    status: 431,
    slug: 'request-headers-too-large',
    title: 'Request header fields too large',
  },
  GH_INTERNAL: { status: 500, slug: 'internal-error', title: 'Internal error' },
  GH_UPSTREAM_UNREACHABLE: {
    status: 502,
    slug: 'upstream-unreachable',
    title: 'Upstream refused or reset the connection',
  },
  GH_UPSTREAM_BAD_RESPONSE: {
    status: 502,
    slug: 'upstream-bad-response',
    title: 'Upstream sent an invalid response',
  },
  GH_NO_TARGET: { status: 503, slug: 'no-target-available', title: 'No upstream target available' },
  GH_CIRCUIT_OPEN: { status: 503, slug: 'circuit-open', title: 'Circuit breaker open' },
  GH_SHUTTING_DOWN: { status: 503, slug: 'shutting-down', title: 'Gateway is shutting down' },
  GH_UPSTREAM_TIMEOUT: { status: 504, slug: 'upstream-timeout', title: 'Upstream did not answer in time' },
} as const satisfies Record<string, { status: number; slug: string; title: string }>

export type ErrorCode = keyof typeof ERRORS

/** An error that becomes a problem+json reply. `headers` carry e.g. Allow, Retry-After. */
export class GatehouseError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly headers: Record<string, string> | undefined
  constructor(
    code: ErrorCode,
    detail: string,
    options?: { headers?: Record<string, string>; cause?: unknown },
  ) {
    super(detail, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'GatehouseError'
    this.code = code
    this.status = ERRORS[code].status
    this.headers = options?.headers
  }
}

export function problemType(code: ErrorCode): string {
  return PROBLEM_TYPE_BASE + ERRORS[code].slug
}
