/**
 * Requests the HTTP parser refuses never reach a route: malformed heads,
 * smuggling vectors (Content-Length with Transfer-Encoding, bad chunked
 * framing, obs-fold), oversized heads, slow heads. They get a problem+json
 * answer and the connection is closed (RFC 9112 §11.2: after a framing error
 * the rest of the stream cannot be trusted).
 */
import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import { ERRORS, type ErrorCode, problemType } from '../errors.ts'

export function answerClientError(
  error: NodeJS.ErrnoException,
  socket: Socket,
  requestIdHeader = 'x-request-id',
): void {
  // A response already under way (a bad chunk late in a body being proxied) cannot be followed by
  // another: cutting the connection is the only signal left. Node's `_httpMessage` is that response.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent: boolean } })._httpMessage
  if (!socket.writable || error.code === 'ECONNRESET' || inFlight?.headersSent) {
    socket.destroy()
    return
  }
  const code = clientErrorCode(error.code ?? '')
  const spec = ERRORS[code]
  // Like every problem, the id is in the body and in the header (docs/errors.md).
  const requestId = randomUUID()
  const body = JSON.stringify({
    type: problemType(code),
    title: spec.title,
    status: spec.status,
    detail:
      code === 'GH_BAD_REQUEST' ? `The request could not be parsed (${error.code ?? 'invalid'})` : spec.title,
    code,
    requestId,
  })
  socket.end(
    `HTTP/1.1 ${spec.status} ${spec.title}\r\nContent-Type: application/problem+json\r\nCache-Control: no-store\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${requestIdHeader}: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
  )
  socket.destroySoon()
}

function clientErrorCode(code: string): ErrorCode {
  if (code === 'HPE_HEADER_OVERFLOW') return 'GH_HEADERS_TOO_LARGE'
  // Chunk extensions beyond Node's fixed cap (16 KiB per body): Node's own answer is 413 too.
  if (code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return 'GH_PAYLOAD_TOO_LARGE'
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT' || code === 'HPE_HEADERS_TIMEOUT') return 'GH_REQUEST_TIMEOUT'
  return 'GH_BAD_REQUEST'
}
