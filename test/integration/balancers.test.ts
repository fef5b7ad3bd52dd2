/**
 * Each balancer through a real gateway over three real upstreams: the spread
 * users see, and the behaviours that need a real exchange (in-flight counts,
 * measured latency, client addresses through trusted proxies).
 */
import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/** How one upstream behaves; tests change it and put it back. */
interface Behaviour {
  /** Answer after this long. */
  delayMs: number
  /** Keep every request until released. */
  hold: boolean
  /** Answers of held requests, to release them. */
  readonly held: (() => void)[]
}

function answering(name: string, behaviour: Behaviour) {
  return (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      const answer = () => {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ name }))
      }
      if (behaviour.hold) behaviour.held.push(answer)
      else if (behaviour.delayMs > 0) setTimeout(answer, behaviour.delayMs)
      else answer()
    })
  }
}

describe('balancers through a gateway', () => {
  const names = ['one', 'two', 'three'] as const
  const behaviours = names.map((): Behaviour => ({ delayMs: 0, hold: false, held: [] }))
  let upstreams: Upstream[]
  let gw: TestGateway

  before(async () => {
    upstreams = await Promise.all(names.map((name, i) => startUpstream(name, answering(name, behaviours[i]))))
    const [one, two, three] = upstreams.map((u) => u.url)
    const plain = `[${one}, ${two}, ${three}]`
    gw = await startGateway(`
listeners:
  - port: 0
    host: 127.0.0.1
global: {trustedProxies: [127.0.0.1]}
services:
  rr:
    targets: [{url: ${one}, weight: 3}, {url: ${two}, weight: 2}, {url: ${three}, weight: 1}]
  lc:
    targets: ${plain}
    balancer: least-connections
  ch:
    targets: ${plain}
    balancer: {algorithm: consistent-hash, key: {header: X-User}}
  ip:
    targets: ${plain}
    balancer: ip-hash
  ewma:
    targets: ${plain}
    balancer: ewma
  random:
    targets: ${plain}
    balancer: random
routes:
  - {path: /rr, service: rr}
  - {path: /lc, service: lc}
  - {path: /ch, service: ch}
  - {path: /ip, service: ip}
  - {path: /ewma, service: ewma}
  - {path: /random, service: random}
`)
  })

  after(async () => {
    for (const behaviour of behaviours) for (const answer of behaviour.held.splice(0)) answer()
    await gw.stop()
    await Promise.all(upstreams.map((u) => u.close()))
  })

  /** The upstream that answered a GET of `path`. */
  async function servedBy(path: string, headers: Record<string, string> = {}): Promise<string> {
    const res = await request(`${gw.url()}${path}`, { headers })
    assert.equal(res.statusCode, 200)
    return ((await res.body.json()) as { name: string }).name
  }

  function count(list: readonly string[]): Record<string, number> {
    const counts: Record<string, number> = {}
    for (const name of list) counts[name] = (counts[name] ?? 0) + 1
    return counts
  }

  it('round-robin: weights 3:2:1 give exact shares', async () => {
    const served: string[] = []
    for (let batch = 0; batch < 10; batch++)
      served.push(...(await Promise.all(Array.from({ length: 6 }, () => servedBy('/rr')))))
    assert.deepEqual(count(served), { one: 30, two: 20, three: 10 })
  })

  it('least-connections: a target holding its requests gets no new ones while others are idle', async () => {
    const slow = behaviours[0]
    slow.hold = true
    const pending: Promise<string>[] = []
    try {
      for (let i = 0; i < 30; i++) {
        const heldBefore = slow.held.length
        let settled = false
        const reply = servedBy('/lc').finally(() => {
          settled = true
        })
        pending.push(reply)
        // The request either came back or is held by the slow target: then send the next.
        await eventually(() => settled || slow.held.length > heldBefore, { timeout: 10_000 })
      }
      assert.equal(slow.held.length, 1, 'only the first request of the rotation reached the slow target')
    } finally {
      slow.hold = false
      for (const answer of slow.held.splice(0)) answer()
    }
    const counts = count(await Promise.all(pending))
    assert.equal(counts.one, 1)
    assert.equal(counts.two + counts.three, 29)
    assert.ok(Math.abs(counts.two - counts.three) <= 1, JSON.stringify(counts))
  })

  it('consistent-hash on a header: one key, one target; the keys spread', async () => {
    const owner = new Map<string, string>()
    for (let round = 0; round < 3; round++)
      for (let user = 0; user < 20; user++) {
        const key = `user-${user}`
        const name = await servedBy(`/ch/${round}`, { 'x-user': key })
        if (round === 0) owner.set(key, name)
        else assert.equal(name, owner.get(key), `${key} moved`)
      }
    assert.ok(new Set(owner.values()).size >= 2, `20 keys all on ${[...owner.values()][0]}`)
  })

  it('ip-hash: a client behind a trusted proxy (X-Forwarded-For) stays on one target', async () => {
    const owner = new Map<string, string>()
    for (let round = 0; round < 3; round++)
      for (let client = 1; client <= 20; client++) {
        const ip = `198.51.100.${client}`
        const name = await servedBy('/ip', { 'x-forwarded-for': ip })
        if (round === 0) owner.set(ip, name)
        else assert.equal(name, owner.get(ip), `${ip} moved`)
      }
    assert.ok(new Set(owner.values()).size >= 2, 'the clients spread')
  })

  it('ewma: a slow target stops getting requests once it has been measured', async () => {
    behaviours[2].delayMs = 400
    try {
      const served: string[] = []
      for (let i = 0; i < 30; i++) served.push(await servedBy('/ewma'))
      const counts = count(served)
      // At most a probe or two before its first (slow) answer is known.
      assert.ok((counts.three ?? 0) <= 2, JSON.stringify(counts))
      assert.ok((counts.one ?? 0) > 0 && (counts.two ?? 0) > 0, JSON.stringify(counts))
    } finally {
      behaviours[2].delayMs = 0
    }
  })

  it('random (power of two choices): every target gets a share', async () => {
    const served: string[] = []
    for (let batch = 0; batch < 15; batch++)
      served.push(...(await Promise.all(Array.from({ length: 6 }, () => servedBy('/random')))))
    const counts = count(served)
    for (const name of names) assert.ok((counts[name] ?? 0) > 5, JSON.stringify(counts))
  })
})
