/**
 * HTTPS listeners: the certificate is chosen per connection by SNI (exact
 * name, one-label wildcard, default), TLS 1.2 and 1.3 both negotiate unless
 * minVersion says otherwise, requests go through to a plain upstream, and a
 * plain listener can redirect everything to HTTPS. Certificates are made at
 * test time (helpers/certs.ts).
 */
import assert from 'node:assert/strict'
import { request as httpsRequest } from 'node:https'
import { after, before, describe, it } from 'node:test'
import { checkServerIdentity, connect, type PeerCertificate, type TLSSocket } from 'node:tls'
import { Agent, request } from 'undici'
import { makeCertificates, type TestPki } from '../helpers/certs.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { bodyOf, rawRequest, statusOf } from '../helpers/raw.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

interface Handshake {
  protocol: string | null
  alpn: string | false
  cert: PeerCertificate
  /** The chain is valid against the test CA (the name is checked separately). */
  authorized: boolean
}

function handshake(
  port: number,
  ca: string,
  options: {
    servername?: string
    minVersion?: 'TLSv1.2' | 'TLSv1.3'
    maxVersion?: 'TLSv1.2' | 'TLSv1.3'
  } = {},
): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      {
        port,
        host: '127.0.0.1',
        ca,
        // Without servername no SNI is sent (the host is an IP address).
        servername: options.servername,
        minVersion: options.minVersion,
        maxVersion: options.maxVersion,
        // The name is asserted by the test itself, so a default certificate can be looked at too.
        checkServerIdentity: () => undefined,
      },
      () => {
        const result = {
          protocol: socket.getProtocol(),
          alpn: socket.alpnProtocol ?? false,
          cert: socket.getPeerCertificate(),
          authorized: socket.authorized,
        }
        socket.end()
        resolve(result)
      },
    )
    socket.once('error', reject)
  })
}

describe('TLS listeners', () => {
  let pki: TestPki
  let upstream: Upstream
  let gw: TestGateway
  const certs = () => pki.certs
  before(async () => {
    pki = await makeCertificates(['api.example.com', '*.example.com', 'default.test', 'named-in-config.test'])
    upstream = await startUpstream('tls-upstream')
    const c = pki.certs
    gw = await startGateway(`
listeners:
  - name: https
    port: 0
    host: 127.0.0.1
    tls:
      certificates:
        - {cert: ${c['api.example.com'].certFile}, key: ${c['api.example.com'].keyFile}}
        - {cert: ${c['*.example.com'].certFile}, key: ${c['*.example.com'].keyFile}}
        - {cert: ${c['default.test'].certFile}, key: ${c['default.test'].keyFile}, default: true}
        - cert: ${c['named-in-config.test'].certFile}
          key: ${c['named-in-config.test'].keyFile}
          serverNames: [alias.test]
  - name: modern
    port: 0
    host: 127.0.0.1
    tls:
      minVersion: TLSv1.3
      certificates:
        - {cert: ${c['api.example.com'].certFile}, key: ${c['api.example.com'].keyFile}}
  - name: redirect
    port: 0
    host: 127.0.0.1
    redirectToHttps: {port: 8443}
  - name: redirect-default-port
    port: 0
    host: 127.0.0.1
    redirectToHttps: {status: 301}
services:
  app:
    targets: [${upstream.url}]
routes:
  - path: /
    service: app
`)
  })
  after(async () => {
    await gw.stop()
    await upstream.close()
    await pki.remove()
  })

  describe('certificate by SNI', () => {
    const cases: [servername: string | undefined, expected: string, why: string][] = [
      ['api.example.com', 'api.example.com', 'an exact name'],
      ['API.Example.COM', 'api.example.com', 'an exact name in another case'],
      ['a.example.com', '*.example.com', 'a wildcard for one label'],
      ['a.b.example.com', 'default.test', 'the default: a wildcard covers one label only'],
      ['example.com', 'default.test', 'the default: a wildcard needs a label'],
      ['unknown.test', 'default.test', 'the default for an unknown name'],
      [undefined, 'default.test', 'the default without SNI'],
      ['alias.test', 'named-in-config.test', 'the certificate whose serverNames list the name'],
    ]
    for (const [servername, expected, why] of cases) {
      it(`serves ${why} (${servername ?? 'no SNI'} -> ${expected})`, async () => {
        const result = await handshake(gw.port('https'), pki.ca.cert, { servername })
        assert.equal(result.authorized, true)
        assert.equal(result.cert.subject.CN, expected)
        assert.equal(result.cert.subjectaltname, `DNS:${expected}`)
        if (servername !== undefined && expected !== 'default.test' && servername !== 'alias.test')
          assert.equal(checkServerIdentity(servername.toLowerCase(), result.cert), undefined)
      })
    }
  })

  describe('protocol versions', () => {
    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      it(`negotiates ${version}`, async () => {
        const result = await handshake(gw.port('https'), pki.ca.cert, {
          servername: 'api.example.com',
          minVersion: version,
          maxVersion: version,
        })
        assert.equal(result.protocol, version)
        assert.equal(result.cert.subject.CN, 'api.example.com')
      })
    }

    it('refuses a TLS 1.2-only client when minVersion is TLSv1.3', async () => {
      await assert.rejects(
        handshake(gw.port('modern'), pki.ca.cert, { servername: 'api.example.com', maxVersion: 'TLSv1.2' }),
        (error: NodeJS.ErrnoException) => {
          assert.match(error.code ?? '', /^ERR_SSL_/)
          return true
        },
      )
      const result = await handshake(gw.port('modern'), pki.ca.cert, { servername: 'api.example.com' })
      assert.equal(result.protocol, 'TLSv1.3')
    })
  })

  describe('HTTPS through to the upstream', () => {
    it('proxies with undici, verifying the certificate for the requested name', async () => {
      const dispatcher = new Agent({ connect: { ca: pki.ca.cert, servername: 'a.example.com' } })
      try {
        const res = await request(`https://127.0.0.1:${gw.port('https')}/orders?page=2`, {
          dispatcher,
          headers: { host: 'a.example.com' },
        })
        assert.equal(res.statusCode, 200)
        const body = (await res.body.json()) as { name: string; url: string; headers: Record<string, string> }
        assert.equal(body.name, 'tls-upstream')
        assert.equal(body.url, '/orders?page=2')
        assert.equal(body.headers['x-forwarded-proto'], 'https')
        assert.equal(body.headers['x-forwarded-host'], 'a.example.com')
      } finally {
        await dispatcher.close()
      }
    })

    it('proxies with node:https, and a wrong name fails verification', async () => {
      const get = (servername: string) =>
        new Promise<{ status: number; cn: string; body: string }>((resolve, reject) => {
          const req = httpsRequest(
            {
              host: '127.0.0.1',
              port: gw.port('https'),
              path: '/hello',
              servername,
              ca: pki.ca.cert,
              headers: { host: servername },
              agent: false,
            },
            (res) => {
              let body = ''
              res.setEncoding('utf8')
              res.on('data', (chunk: string) => {
                body += chunk
              })
              res.on('end', () => {
                const cn = String((res.socket as TLSSocket).getPeerCertificate().subject?.CN ?? '')
                resolve({ status: res.statusCode ?? 0, cn, body })
              })
            },
          )
          req.once('error', reject)
          req.end()
        })
      const ok = await get('api.example.com')
      assert.equal(ok.status, 200)
      assert.equal(JSON.parse(ok.body).url, '/hello')
      // No certificate names b.c.example.com: the default one is served and the client rejects it.
      await assert.rejects(get('b.c.example.com'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' })
    })
  })

  describe('redirect to HTTPS', () => {
    it('answers 308 with the same host, path and query on the HTTPS port', async () => {
      const seen = upstream.requests.length
      const res = await request(`${gw.url('redirect')}/a/b?x=1&y=two`, {
        method: 'POST',
        headers: { host: 'shop.example.com:8080' },
        body: 'kept for the redirected request',
      })
      assert.equal(res.statusCode, 308)
      assert.equal(res.headers.location, 'https://shop.example.com:8443/a/b?x=1&y=two')
      await res.body.dump()
      assert.equal(upstream.requests.length, seen, 'a redirect never reaches the upstream')
    })

    it('leaves out port 443 and takes the configured status', async () => {
      const res = await request(`${gw.url('redirect-default-port')}/login`, {
        headers: { host: 'example.com' },
      })
      assert.equal(res.statusCode, 301)
      assert.equal(res.headers.location, 'https://example.com/login')
      await res.body.dump()
    })

    it('answers 400 to an HTTP/1.0 request without Host instead of redirecting nowhere', async () => {
      const result = await rawRequest(gw.port('redirect'), 'GET /login HTTP/1.0\r\n\r\n')
      assert.equal(statusOf(result.text), 400, result.text)
      assert.equal(JSON.parse(bodyOf(result.text)).code, 'GH_BAD_REQUEST')
      assert.doesNotMatch(result.text, /\r\nlocation:/i)
    })

    it('still applies the limits before redirecting', async () => {
      const res = await request(`${gw.url('redirect')}/${'x'.repeat(9000)}`, {
        headers: { host: 'example.com' },
      })
      assert.equal(res.statusCode, 414)
      assert.equal(res.headers['content-type'], 'application/problem+json')
      assert.equal(((await res.body.json()) as { code: string }).code, 'GH_URI_TOO_LONG')
    })
  })

  it('swaps certificates on reload without rebinding the port', async () => {
    const c = certs()
    const yaml = (first: string, second: string) => `
listeners:
  - port: 0
    host: 127.0.0.1
    tls:
      certificates:
        - {cert: ${c[first].certFile}, key: ${c[first].keyFile}, default: true}
        - {cert: ${c[second].certFile}, key: ${c[second].keyFile}}
routes:
  - {path: /, respond: {body: ok}}
`
    const reloading = await startGateway(yaml('default.test', 'api.example.com'))
    try {
      const port = reloading.port()
      assert.equal((await handshake(port, pki.ca.cert)).cert.subject.CN, 'default.test')
      await reloading.write(yaml('*.example.com', 'named-in-config.test'))
      assert.deepEqual(await reloading.gateway.reload(), { ok: true, version: 2 })
      assert.equal(reloading.port(), port)
      assert.equal((await handshake(port, pki.ca.cert)).cert.subject.CN, '*.example.com')
      const byName = await handshake(port, pki.ca.cert, { servername: 'named-in-config.test' })
      assert.equal(byName.cert.subject.CN, 'named-in-config.test')
      // api.example.com is gone: the new default (the wildcard, which also covers it) answers.
      const gone = await handshake(port, pki.ca.cert, { servername: 'api.example.com' })
      assert.equal(gone.cert.subject.CN, '*.example.com')
    } finally {
      await reloading.stop()
    }
  })

  it('makes its test certificates in a temp folder (no key material in the repository)', () => {
    assert.ok(certs()['api.example.com'].keyFile.startsWith(pki.dir))
    assert.match(certs()['api.example.com'].key, /-----BEGIN PRIVATE KEY-----/)
  })
})
