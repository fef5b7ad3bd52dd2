/**
 * HTTP/1.1 Upgrade (WebSocket, RFC 9110 §7.8): the request goes through
 * routing and the request phases like any other; a `proxy` route then opens
 * a connection of its own to a target, and on 101 the two sockets are piped
 * both ways (with backpressure). An end or error on either side ends or
 * destroys the other. Refusals before the tunnel are ordinary problem+json
 * replies; a target that refuses the upgrade has its answer relayed.
 */
import { request as httpRequest, type IncomingMessage, ServerResponse } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Socket } from 'node:net'
import { GatehouseError } from '../errors.ts'
import type { RequestContext } from '../pipeline/context.ts'
import { handle, handleRequest, setUpstreamPath } from '../pipeline/handle.ts'
import type { CompiledListener, Runtime } from '../runtime/runtime.ts'
import type { Target } from '../upstreams/target.ts'
import { fail, upstreamResponseHead } from './forward.ts'
import { upstreamRequestHeaders } from './headers.ts'
import { upstreamError } from './upstream-errors.ts'

export function proxyUpgrade(
  runtime: Runtime,
  listener: CompiledListener,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
): void {
  const res = new ServerResponse(req)
  res.assignSocket(socket)
  res.shouldKeepAlive = false
  res.once('finish', () => socket.destroySoon())
  socket.on('error', () => socket.destroy())
  handleRequest(runtime, listener, req, res, (ctx) => {
    if (ctx.route?.config.terminal.kind === 'proxy') tunnel(ctx, socket, head)
    else handle(ctx)
  })
}

function tunnel(ctx: RequestContext, client: Socket, head: Buffer): void {
  const service = ctx.route!.service!
  const target = service.choose(ctx)
  if (target === null) {
    fail(ctx, new GatehouseError('GH_NO_TARGET', `Service ${service.config.name} has no target available`))
    return
  }
  ctx.target = target
  setUpstreamPath(ctx)
  const route = ctx.route!.config
  const hostHeader = route.preserveHost
    ? (ctx.req.headers.host ?? target.host)
    : (route.hostRewrite ?? target.host)
  const flat = upstreamRequestHeaders(ctx, hostHeader)
  flat.push('connection', 'upgrade', 'upgrade', String(ctx.req.headers.upgrade))
  const headers: Record<string, string> = {}
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i].toLowerCase()
    headers[name] = headers[name] === undefined ? flat[i + 1] : `${headers[name]}, ${flat[i + 1]}`
  }
  const url = new URL(target.origin)
  const secure = url.protocol === 'https:'
  const { timeouts, tls } = service.config
  const options = {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port || (secure ? 443 : 80),
    method: ctx.method,
    path: ctx.upstreamPath,
    headers,
    agent: false as const,
    // Until connected; then the response timeout (below).
    timeout: timeouts.connectMs,
  }
  ctx.upstreamStart = performance.now()
  target.state.inflight++
  let released = false
  const release = () => {
    if (!released) target.state.inflight--
    released = true
  }
  const upstream = secure
    ? httpsRequest({
        ...options,
        // Unset for IP targets: Node then derives it from the Host header.
        ...(target.serverName === null ? {} : { servername: target.serverName }),
        rejectUnauthorized: tls.verify,
        ...(tls.ca === null ? {} : { ca: tls.ca }),
      })
    : httpRequest(options)

  let connected = false
  upstream.once('socket', (socket: Socket) => {
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      connected = true
      upstream.setTimeout(timeouts.responseMs)
    })
  })
  upstream.on('timeout', () => {
    const error = connected
      ? new GatehouseError('GH_UPSTREAM_TIMEOUT', `${target.origin} did not answer the upgrade in time`)
      : new GatehouseError('GH_UPSTREAM_TIMEOUT', `Connecting to ${target.origin} timed out`)
    upstream.destroy(error)
  })
  upstream.once('error', (error) => {
    release()
    if (!ctx.replied) fail(ctx, upstreamError(error, target.origin))
    else client.destroy()
  })
  client.once('close', () => {
    release()
    upstream.destroy()
  })
  upstream.once('response', (response) => relayRefusal(ctx, target, response))
  upstream.once('upgrade', (response: IncomingMessage, socket: Socket, upstreamHead: Buffer) => {
    ctx.upstreamTimeMs = performance.now() - ctx.upstreamStart
    upstream.setTimeout(0)
    socket.setTimeout(0)
    if (client.destroyed) {
      socket.destroy()
      return
    }
    ctx.replied = true
    ctx.status = 101
    client.write(switchingProtocols(ctx, response))
    if (upstreamHead.length > 0) client.write(upstreamHead)
    if (head.length > 0) socket.write(head)
    socket.on('error', () => client.destroy())
    client.on('error', () => socket.destroy())
    socket.once('close', () => client.destroy())
    client.once('close', () => socket.destroy())
    socket.on('data', (chunk: Buffer) => {
      ctx.bytesOut += chunk.length
    })
    socket.pipe(client)
    client.pipe(socket)
  })
  upstream.end()
}

/** The target answered without switching (e.g. 401, 403, 426): relayed as an ordinary response, then closed. */
function relayRefusal(ctx: RequestContext, target: Target, response: IncomingMessage): void {
  ctx.upstreamTimeMs = performance.now() - ctx.upstreamStart
  const status = response.statusCode ?? 502
  let head: ReturnType<typeof upstreamResponseHead>
  try {
    head = upstreamResponseHead(ctx, status, { ...response.headers })
  } catch (error) {
    response.destroy()
    fail(ctx, error)
    return
  }
  ctx.replied = true
  ctx.status = head.status
  head.headers.connection = 'close'
  try {
    ctx.res.writeHead(head.status, head.headers as Record<string, string>)
  } catch (error) {
    response.destroy()
    ctx.replied = false
    const detail = `${target.origin} sent a response that cannot be relayed (${(error as Error).message})`
    fail(ctx, new GatehouseError('GH_UPSTREAM_BAD_RESPONSE', detail, { cause: error }))
    return
  }
  // Upgrades are HTTP/1.1 only: the response here is node:http's, made in proxyUpgrade.
  response.pipe(ctx.res as ServerResponse)
  response.once('error', () => ctx.res.destroy())
}

/** The 101 head for the client: the target's fields (minus hidden ones) and the request id. */
function switchingProtocols(ctx: RequestContext, response: IncomingMessage): string {
  const { hideUpstreamHeaders, requestIdHeader } = ctx.runtime.config.global
  let reply = `HTTP/1.1 101 ${response.statusMessage || 'Switching Protocols'}\r\n`
  const raw = response.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    if (name === requestIdHeader || hideUpstreamHeaders.includes(name)) continue
    reply += `${raw[i]}: ${raw[i + 1]}\r\n`
  }
  return `${reply}${requestIdHeader}: ${ctx.requestId}\r\n\r\n`
}
