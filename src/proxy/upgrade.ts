/**
 * HTTP/1.1 Upgrade (WebSocket, RFC 9110 §7.8): the request goes through
 * routing and the request phases like any other; a `proxy` route then opens
 * a connection of its own to a target, and on 101 the two sockets are piped
 * both ways. An end or error on either side ends or destroys the other.
 * Refusals before the tunnel are ordinary problem+json replies.
 */
import { request as httpRequest, type IncomingMessage, ServerResponse } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Socket } from 'node:net'
import { GatehouseError } from '../errors.ts'
import type { RequestContext } from '../pipeline/context.ts'
import { handle, handleRequest, setUpstreamPath } from '../pipeline/handle.ts'
import { sendProblem } from '../pipeline/reply.ts'
import type { CompiledListener, Runtime } from '../runtime/runtime.ts'
import { cleanResponseHeaders, upstreamRequestHeaders } from './headers.ts'
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
  const target = service.balancer.pick(ctx)
  if (target === null)
    throw new GatehouseError('GH_NO_TARGET', `Service ${service.config.name} has no target available`)
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
  const tls = service.config.tls
  const options = {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port || (url.protocol === 'https:' ? 443 : 80),
    method: ctx.method,
    path: ctx.upstreamPath,
    headers,
    agent: false as const,
    timeout: service.config.timeouts.connectMs,
  }
  ctx.upstreamStart = performance.now()
  target.inflight++
  let released = false
  const release = () => {
    if (!released) target.inflight--
    released = true
  }
  const upstream =
    url.protocol === 'https:'
      ? httpsRequest({
          ...options,
          servername: tls.serverName ?? url.hostname,
          rejectUnauthorized: tls.verify,
          ...(tls.ca === null ? {} : { ca: tls.ca }),
        })
      : httpRequest(options)

  upstream.once('timeout', () =>
    upstream.destroy(Object.assign(new Error('timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })),
  )
  upstream.once('error', (error) => {
    release()
    if (!ctx.replied) sendProblem(ctx, upstreamError(error, target.origin), { connection: 'close' })
    else client.destroy()
  })
  client.once('close', () => {
    release()
    upstream.destroy()
  })
  // The target refused the upgrade: relay its answer as an ordinary response.
  upstream.once('response', (response) => {
    ctx.upstreamTimeMs = performance.now() - ctx.upstreamStart
    const responseHeaders = { ...response.headers }
    cleanResponseHeaders(responseHeaders, ctx.runtime.config.global.hideUpstreamHeaders)
    ctx.replied = true
    ctx.status = response.statusCode ?? 502
    ctx.res.writeHead(ctx.status, { ...responseHeaders, connection: 'close' })
    response.pipe(ctx.res as ServerResponse)
  })
  upstream.once('upgrade', (response: IncomingMessage, socket: Socket, upstreamHead: Buffer) => {
    ctx.upstreamTimeMs = performance.now() - ctx.upstreamStart
    upstream.setTimeout(0)
    ctx.replied = true
    ctx.status = 101
    let reply = `HTTP/1.1 101 ${response.statusMessage ?? 'Switching Protocols'}\r\n`
    const raw = response.rawHeaders
    for (let i = 0; i < raw.length; i += 2) reply += `${raw[i]}: ${raw[i + 1]}\r\n`
    reply += `${ctx.runtime.config.global.requestIdHeader}: ${ctx.requestId}\r\n\r\n`
    client.write(reply)
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
