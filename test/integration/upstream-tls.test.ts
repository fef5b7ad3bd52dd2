/**
 * TLS to https:// targets: the certificate is verified by default, `tls.ca`
 * adds a trust anchor, `tls.verify: false` turns verification off, and the
 * SNI name is the target host or `tls.serverName`, never the client's Host.
 */
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { TLSSocket } from 'node:tls'
import { request } from 'undici'
import WebSocket, { WebSocketServer } from 'ws'
import { makeCertificates, type TestPki } from '../helpers/certs.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

interface Echo {
  host: string
  /** The SNI name the target received, or null without one. */
  servername: string | null
}

interface TlsTarget {
  port: number
  close(): Promise<void>
}

describe('TLS to targets', () => {
  let pki: TestPki
  let localhost: TlsTarget
  let internal: TlsTarget
  let gw: TestGateway

  before(async () => {
    pki = await makeCertificates(['localhost', 'api.internal'])
    localhost = await startTlsTarget(pki.certs.localhost.cert, pki.certs.localhost.key)
    internal = await startTlsTarget(pki.certs['api.internal'].cert, pki.certs['api.internal'].key)
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
services:
  untrusted:
    targets: ['https://localhost:${localhost.port}']
  trusted:
    targets: ['https://localhost:${localhost.port}']
    tls: {ca: '${pki.ca.certFile}'}
  unverified:
    targets: ['https://localhost:${localhost.port}']
    tls: {verify: false}
  by-ip:
    targets: ['https://127.0.0.1:${localhost.port}']
    tls: {ca: '${pki.ca.certFile}'}
  named:
    targets: ['https://127.0.0.1:${internal.port}']
    tls: {ca: '${pki.ca.certFile}', serverName: api.internal}
routes:
  - {path: /untrusted, service: untrusted}
  - {path: /trusted, service: trusted}
  - {path: /preserved, service: trusted, preserveHost: true}
  - {path: /unverified, service: unverified}
  - {path: /by-ip, service: by-ip}
  - {path: /named, service: named}
  - {path: /named-preserved, service: named, preserveHost: true}
`)
  })

  after(async () => {
    await gw?.stop(0)
    await Promise.all([localhost?.close(), internal?.close()])
    await pki?.remove()
  })

  async function get(path: string, headers: Record<string, string> = {}) {
    const res = await request(`${gw.url()}${path}`, { headers, signal: AbortSignal.timeout(5000) })
    return {
      status: res.statusCode,
      body: (await res.body.json()) as Echo & { code?: string; detail?: string },
    }
  }

  it('refuses a certificate from a CA it does not trust: 502 GH_UPSTREAM_UNREACHABLE', async () => {
    const { status, body } = await get('/untrusted')
    assert.equal(status, 502)
    assert.equal(body.code, 'GH_UPSTREAM_UNREACHABLE')
    assert.match(body.detail ?? '', /TLS|certificate/i)
  })

  it('trusts the CA in tls.ca and sends the target host as SNI', async () => {
    const { status, body } = await get('/trusted')
    assert.equal(status, 200)
    assert.equal(body.servername, 'localhost')
    assert.equal(body.host, `localhost:${localhost.port}`)
  })

  it('keeps the target host as SNI when the client Host is preserved', async () => {
    const { status, body } = await get('/preserved', { host: 'www.example.com' })
    assert.equal(status, 200)
    assert.equal(body.host, 'www.example.com')
    assert.equal(body.servername, 'localhost')
  })

  it('accepts any certificate with tls.verify: false', async () => {
    const { status, body } = await get('/unverified')
    assert.equal(status, 200)
    assert.equal(body.servername, 'localhost')
  })

  it('checks the certificate against an IP target: a name-only certificate fails', async () => {
    const { status, body } = await get('/by-ip')
    assert.equal(status, 502)
    assert.equal(body.code, 'GH_UPSTREAM_UNREACHABLE')
  })

  it('sends and verifies tls.serverName, whatever the Host header', async () => {
    const named = await get('/named')
    assert.equal(named.status, 200)
    assert.equal(named.body.servername, 'api.internal')
    const preserved = await get('/named-preserved', { host: 'www.example.com' })
    assert.equal(preserved.status, 200)
    assert.equal(preserved.body.servername, 'api.internal')
    assert.equal(preserved.body.host, 'www.example.com')
  })

  it('tunnels a WebSocket to a wss:// target, verified with tls.ca and tls.serverName', async () => {
    const wsTarget = await startTlsWsTarget(pki.certs['api.internal'].cert, pki.certs['api.internal'].key)
    const wsGateway = await startGateway(`
listeners: [{port: 0, host: 127.0.0.1}]
services:
  secure-chat:
    targets: ['https://127.0.0.1:${wsTarget.port}']
    tls: {ca: '${pki.ca.certFile}', serverName: api.internal}
routes: [{path: /, service: secure-chat}]
`)
    try {
      const client = new WebSocket(`ws://127.0.0.1:${wsGateway.port()}/chat`)
      const first = await new Promise<string>((resolve, reject) => {
        client.once('message', (data) => resolve(String(data)))
        client.once('error', reject)
      })
      assert.equal(first, 'hello over api.internal')
      client.close()
    } finally {
      await wsGateway.stop(0)
      await wsTarget.close()
    }
  })
})

/** An HTTPS target answering JSON {host, servername}. */
async function startTlsTarget(cert: string, key: string): Promise<TlsTarget> {
  const server = createServer({ cert, key }, (req, res) => {
    const servername = (req.socket as TLSSocket).servername
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ host: req.headers.host, servername: servername || null }))
  })
  return listen(server)
}

/** A wss:// target that greets with the SNI name it received. */
async function startTlsWsTarget(cert: string, key: string): Promise<TlsTarget> {
  const server = createServer({ cert, key })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (ws, req) => {
    ws.on('error', () => {})
    ws.send(`hello over ${(req.socket as TLSSocket).servername}`)
  })
  const target = await listen(server)
  return {
    port: target.port,
    close: async () => {
      wss.close()
      await target.close()
    },
  }
}

async function listen(server: Server): Promise<TlsTarget> {
  const sockets = new Set<Socket>()
  server.on('secureConnection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.on('tlsClientError', () => {})
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
