import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { Agent, type Dispatcher, request } from 'undici'
import { makeCertificates, type TestPki } from '../helpers/certs.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const COOKIE = 'srv'

/**
 * An upstream that answers its name; `?own=N` makes it set N cookies of its
 * own, so the test sees them kept beside Gatehouse's.
 */
function upstream(name: string): Promise<Upstream> {
  return startUpstream(name, (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      const own = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('own') ?? 0)
      const cookies = Array.from({ length: own }, (_, i) => `app${i}=${name}; Path=/app`)
      res.writeHead(200, {
        'content-type': 'application/json',
        ...(own === 0 ? {} : { 'set-cookie': own === 1 ? cookies[0] : cookies }),
      })
      res.end(JSON.stringify({ name }))
    })
  })
}

interface Answer {
  status: number
  /** Name of the upstream that answered. */
  name: string
  setCookies: string[]
  /** The value of our cookie in Set-Cookie, or null when none was set. */
  pinned: string | null
}

async function get(
  url: string,
  headers: Record<string, string> = {},
  dispatcher?: Dispatcher,
): Promise<Answer> {
  const res = await request(url, { headers, dispatcher })
  const body = (await res.body.json()) as { name: string }
  const raw = res.headers['set-cookie']
  const setCookies = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw]
  const ours = setCookies.find((cookie) => cookie.startsWith(`${COOKIE}=`))
  return {
    status: res.statusCode,
    name: body.name,
    setCookies,
    pinned: ours === undefined ? null : ours.slice(COOKIE.length + 1, ours.indexOf(';')),
  }
}

/** Three upstreams behind round robin, sticky by cookie on /cookie and by client address on /ip. */
function config(ups: Upstream[], drained: { cookie?: string; ip?: string } = {}, extraRoute = ''): string {
  const list = (drain?: string) =>
    `[${ups.map((u) => (u.url === drain ? `{url: ${u.url}, drain: true}` : u.url)).join(', ')}]`
  return `
listeners:
  - port: 0
    host: 127.0.0.1
global:
  trustedProxies: [127.0.0.1]
services:
  by-cookie:
    targets: ${list(drained.cookie)}
    sticky: {cookie: {name: ${COOKIE}, maxAge: 1h}}
  secure-cookie:
    targets: ${list()}
    sticky: {cookie: {name: ${COOKIE}, secure: true}}
  by-address:
    targets: ${list(drained.ip)}
    sticky: {ip: {ttl: 10m}}
routes:
  - path: /cookie
    service: by-cookie
  - path: /secure
    service: secure-cookie
  - path: /ip
    service: by-address
${extraRoute}`
}

describe('sticky sessions through the gateway', () => {
  const NAMES = ['one', 'two', 'three']
  let ups: Upstream[]
  let gw: TestGateway
  const urlOf = (name: string) => ups[NAMES.indexOf(name)].url
  before(async () => {
    ups = await Promise.all(NAMES.map((name) => upstream(name)))
    gw = await startGateway(config(ups))
  })
  after(async () => {
    await gw.stop()
    await Promise.all(ups.map((u) => u.close()))
  })

  describe('by cookie', () => {
    it('sets an opaque HttpOnly, SameSite=Lax cookie on the first response, with Path and Max-Age', async () => {
      const first = await get(`${gw.url()}/cookie`)
      assert.equal(first.status, 200)
      assert.equal(first.setCookies.length, 1)
      const [cookie] = first.setCookies
      assert.match(cookie, /^srv=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=3600$/)
      // Plain HTTP listener: not Secure unless configured.
      assert.doesNotMatch(cookie, /Secure/)
      const port = String(new URL(urlOf(first.name)).port)
      assert.equal(cookie.includes('127.0.0.1') || cookie.includes(port), false)
    })

    it('keeps a client that sends its cookie back on one target, without setting it again', async () => {
      const first = await get(`${gw.url()}/cookie`)
      assert.notEqual(first.pinned, null)
      for (let i = 0; i < 9; i++) {
        const next = await get(`${gw.url()}/cookie/${i}`, { cookie: `a=1; ${COOKIE}=${first.pinned}; b=2` })
        assert.equal(next.name, first.name)
        assert.deepEqual(next.setCookies, [])
      }
    })

    it('spreads clients without cookies over every target, each pinned where it landed', async () => {
      const seen = new Map<string, string>()
      for (let i = 0; i < 6; i++) {
        const answer = await get(`${gw.url()}/cookie`)
        assert.notEqual(answer.pinned, null)
        // One target, one value: every client that landed on it holds the same one.
        if (seen.has(answer.name)) assert.equal(seen.get(answer.name), answer.pinned)
        seen.set(answer.name, answer.pinned!)
      }
      assert.deepEqual([...seen.keys()].sort(), ['one', 'three', 'two'])
      assert.equal(new Set(seen.values()).size, 3)
      // Each value leads back to its target.
      for (const [name, value] of seen)
        assert.equal((await get(`${gw.url()}/cookie`, { cookie: `${COOKIE}=${value}` })).name, name)
    })

    it("keeps the target's own Set-Cookie fields beside Gatehouse's", async () => {
      const one = await get(`${gw.url()}/cookie?own=1`)
      assert.equal(one.setCookies.length, 2)
      assert.equal(one.setCookies[0], `app0=${one.name}; Path=/app`)
      assert.notEqual(one.pinned, null)
      const two = await get(`${gw.url()}/cookie?own=2`)
      assert.deepEqual(two.setCookies.slice(0, 2), [
        `app0=${two.name}; Path=/app`,
        `app1=${two.name}; Path=/app`,
      ])
      assert.equal(two.setCookies.length, 3)
      // A pinned client gets the target's cookies and no new one of ours.
      const pinned = await get(`${gw.url()}/cookie?own=1`, { cookie: `${COOKIE}=${two.pinned}` })
      assert.equal(pinned.name, two.name)
      assert.deepEqual(pinned.setCookies, [`app0=${two.name}; Path=/app`])
    })

    it('ignores an unknown or tampered cookie and pins the client again', async () => {
      const good = (await get(`${gw.url()}/cookie`)).pinned!
      for (const bad of ['garbage', `${good.slice(0, -2)}xx`, '"', '']) {
        const answer = await get(`${gw.url()}/cookie`, { cookie: `${COOKIE}=${bad}` })
        assert.equal(answer.status, 200)
        assert.match(answer.pinned ?? '', /^[A-Za-z0-9_-]{22}$/)
        assert.notEqual(answer.pinned, bad)
      }
    })

    it('marks the cookie Secure when configured, even on plain HTTP', async () => {
      const answer = await get(`${gw.url()}/secure`)
      assert.equal(answer.setCookies.length, 1)
      assert.match(answer.setCookies[0], /^srv=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly; SameSite=Lax; Secure$/)
    })
  })

  describe('by client address (trusted proxy, X-Forwarded-For)', () => {
    const from = (ip: string) => ({ 'x-forwarded-for': ip })

    it('keeps one client on one target, and sets no cookie', async () => {
      const first = await get(`${gw.url()}/ip`, from('203.0.113.10'))
      assert.deepEqual(first.setCookies, [])
      for (let i = 0; i < 8; i++)
        assert.equal((await get(`${gw.url()}/ip`, from('203.0.113.10'))).name, first.name)
    })

    it('spreads new clients, each staying where it landed', async () => {
      const clients = ['203.0.113.21', '203.0.113.22', '203.0.113.23']
      const landed = new Map<string, string>()
      for (const ip of clients) landed.set(ip, (await get(`${gw.url()}/ip`, from(ip))).name)
      assert.deepEqual([...landed.values()].sort(), ['one', 'three', 'two'])
      for (let round = 0; round < 3; round++)
        for (const ip of [...clients].reverse())
          assert.equal((await get(`${gw.url()}/ip`, from(ip))).name, landed.get(ip))
    })

    it('goes by the client the trusted proxy names, not by the proxy', async () => {
      // The proxy itself (127.0.0.1, no X-Forwarded-For) is a client too, pinned somewhere.
      const proxyItself = (await get(`${gw.url()}/ip`)).name
      // A client pinned elsewhere (round robin gets there within two new clients).
      let client = ''
      let landed = proxyItself
      for (let i = 40; landed === proxyItself && i < 44; i++) {
        client = `203.0.113.${i}`
        landed = (await get(`${gw.url()}/ip`, from(client))).name
      }
      assert.notEqual(landed, proxyItself)
      // The rightmost untrusted address is the client: the trusted hop 127.0.0.1 is skipped.
      for (let i = 0; i < 3; i++)
        assert.equal((await get(`${gw.url()}/ip`, from(`${client}, 127.0.0.1`))).name, landed)
    })

    it('keeps the table across a reload', async () => {
      const clients = ['198.51.100.1', '198.51.100.2', '198.51.100.3']
      const landed = new Map<string, string>()
      for (const ip of clients) landed.set(ip, (await get(`${gw.url()}/ip`, from(ip))).name)
      await gw.write(config(ups, {}, '  - path: /extra\n    service: by-address\n'))
      const reloaded = await gw.gateway.reload()
      assert.equal(reloaded.ok, true)
      // A new balancer starts its rotation afresh: only the carried table keeps all three in place.
      for (const ip of [...clients].reverse())
        assert.equal((await get(`${gw.url()}/ip`, from(ip))).name, landed.get(ip))
    })
  })

  describe('when the pinned target is drained', () => {
    after(async () => {
      await gw.write(config(ups))
      await gw.gateway.reload()
    })

    it('moves the client to another target and pins it there', async () => {
      const cookieFirst = await get(`${gw.url()}/cookie`)
      const ipFirst = await get(`${gw.url()}/ip`, { 'x-forwarded-for': '192.0.2.50' })
      await gw.write(config(ups, { cookie: urlOf(cookieFirst.name), ip: urlOf(ipFirst.name) }))
      assert.equal((await gw.gateway.reload()).ok, true)

      const moved = await get(`${gw.url()}/cookie`, { cookie: `${COOKIE}=${cookieFirst.pinned}` })
      assert.notEqual(moved.name, cookieFirst.name)
      assert.notEqual(moved.pinned, null)
      assert.notEqual(moved.pinned, cookieFirst.pinned)
      for (let i = 0; i < 4; i++) {
        const next = await get(`${gw.url()}/cookie`, { cookie: `${COOKIE}=${moved.pinned}` })
        assert.equal(next.name, moved.name)
        assert.deepEqual(next.setCookies, [])
      }

      const ipMoved = await get(`${gw.url()}/ip`, { 'x-forwarded-for': '192.0.2.50' })
      assert.notEqual(ipMoved.name, ipFirst.name)
      for (let i = 0; i < 4; i++)
        assert.equal((await get(`${gw.url()}/ip`, { 'x-forwarded-for': '192.0.2.50' })).name, ipMoved.name)
    })
  })
})

describe('sticky cookie on an HTTPS listener', () => {
  let pki: TestPki
  let up: Upstream
  let gw: TestGateway
  let dispatcher: Agent
  before(async () => {
    pki = await makeCertificates(['sticky.test'])
    up = await upstream('secure-one')
    const cert = pki.certs['sticky.test']
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
    tls:
      certificates: [{cert: ${cert.certFile}, key: ${cert.keyFile}}]
services:
  default-secure:
    targets: [${up.url}]
    sticky: {cookie: {name: ${COOKIE}}}
  not-secure:
    targets: [${up.url}]
    sticky: {cookie: {name: ${COOKIE}, secure: false}}
routes:
  - path: /default
    service: default-secure
  - path: /plain
    service: not-secure
`)
    dispatcher = new Agent({ connect: { ca: pki.ca.cert, servername: 'sticky.test' } })
  })
  after(async () => {
    await dispatcher.close()
    await gw.stop()
    await up.close()
    await pki.remove()
  })

  it('is Secure by default and a session cookie without maxAge', async () => {
    const answer = await get(`https://127.0.0.1:${gw.port()}/default`, {}, dispatcher)
    assert.equal(answer.status, 200)
    assert.match(answer.setCookies[0], /^srv=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly; SameSite=Lax; Secure$/)
  })

  it('is not Secure when configured off', async () => {
    const answer = await get(`https://127.0.0.1:${gw.port()}/plain`, {}, dispatcher)
    assert.match(answer.setCookies[0], /^srv=[A-Za-z0-9_-]{22}; Path=\/; HttpOnly; SameSite=Lax$/)
  })
})
