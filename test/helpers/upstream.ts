/** Real upstream servers for tests, on 127.0.0.1 port 0. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { eventually } from './eventually.ts'

export interface Upstream {
  readonly url: string
  readonly port: number
  readonly server: Server
  /** Requests seen, in order. */
  readonly requests: IncomingMessage[]
  /** Connections accepted so far (keep-alive reuse shows as fewer connections than requests). */
  connections(): number
  close(): Promise<void>
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse) => void

/** Answers JSON {name, method, url, headers} unless a handler is given. */
export async function startUpstream(name = 'upstream', handler?: UpstreamHandler): Promise<Upstream> {
  const requests: IncomingMessage[] = []
  const sockets = new Set<Socket>()
  let accepted = 0
  const server = createServer((req, res) => {
    requests.push(req)
    if (handler) return handler(req, res)
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers }))
    })
  })
  server.on('connection', (socket) => {
    accepted++
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    requests,
    connections: () => accepted,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

/**
 * Listens on a given port of 127.0.0.1, retrying briefly while the port of a
 * server just killed is still settling; resolves with the bound port.
 */
export async function listenOn(server: Server, port: number): Promise<number> {
  await eventually(
    () =>
      new Promise<boolean>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject)
          resolve(true)
        })
      }),
    { timeout: 5000, interval: 100 },
  )
  return (server.address() as AddressInfo).port
}
