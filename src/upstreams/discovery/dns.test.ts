import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { type DnsServer, startDnsServer } from '../../../test/helpers/dns-server.ts'
import { eventually } from '../../../test/helpers/eventually.ts'
import type { TargetConfig } from '../../config/types.ts'
import { type DnsDiscovery, DnsSource } from './dns.ts'

const silent = pino({ level: 'silent' })

/** A started source and every list it published. */
function watchDns(settings: Partial<DnsDiscovery> & { name: string }) {
  const lists: (readonly TargetConfig[])[] = []
  const source = new DnsSource(
    { kind: 'dns', type: 'A', port: 8080, scheme: 'http', intervalMs: 30_000, servers: [], ...settings },
    silent,
    (targets) => lists.push(targets),
  )
  return { lists, source, first: source.start(), urls: () => lists.at(-1)?.map((t) => t.url) }
}

describe('DnsSource', () => {
  let dns: DnsServer
  const sources: DnsSource[] = []
  const watch = (settings: Partial<DnsDiscovery> & { name: string }) => {
    const watched = watchDns({ servers: [dns.address], ...settings })
    sources.push(watched.source)
    return watched
  }

  before(async () => {
    dns = await startDnsServer()
  })
  after(async () => {
    for (const source of sources) source.stop()
    await dns.close()
  })

  it('resolves A records to targets at the port and re-resolves when the TTL runs out', async () => {
    dns.records.set('a.test', { A: ['127.0.0.3', '127.0.0.2', '127.0.0.2'], ttl: 1 })
    const w = watch({ name: 'a.test' })
    await w.first
    assert.deepEqual(w.urls(), ['http://127.0.0.2:8080', 'http://127.0.0.3:8080'])
    assert.deepEqual(w.lists[0][0], {
      url: 'http://127.0.0.2:8080',
      origin: 'http://127.0.0.2:8080',
      weight: 1,
      backup: false,
      drain: false,
    })
    // The interval is 30s: only the 1s TTL can bring the change this soon.
    dns.records.set('a.test', { A: ['127.0.0.4'], ttl: 1 })
    await eventually(() => assert.deepEqual(w.urls(), ['http://127.0.0.4:8080']), { timeout: 10_000 })
  })

  it('publishes only changes', async () => {
    dns.records.set('same.test', { A: ['127.0.0.2'], ttl: 1 })
    const w = watch({ name: 'same.test' })
    await w.first
    await eventually(() => (dns.queries.get('same.test A') ?? 0) >= 3, { timeout: 10_000 })
    assert.equal(w.lists.length, 1)
  })

  it('asks again after the interval when the TTL is longer', async () => {
    dns.records.set('long.test', { A: ['127.0.0.2'], ttl: 3600 })
    const w = watch({ name: 'long.test', intervalMs: 1000 })
    await w.first
    await eventually(() => (dns.queries.get('long.test A') ?? 0) >= 2, { timeout: 10_000 })
  })

  it('writes AAAA addresses in brackets', async () => {
    dns.records.set('six.test', { AAAA: ['::1'], ttl: 60 })
    const w = watch({ name: 'six.test', type: 'AAAA', scheme: 'https', port: 8443 })
    await w.first
    assert.deepEqual(w.urls(), ['https://[::1]:8443'])
  })

  it('keeps the last list when the server fails, and empties it on NXDOMAIN', async () => {
    dns.records.set('flaky.test', { A: ['127.0.0.2'], ttl: 1 })
    const w = watch({ name: 'flaky.test', intervalMs: 1000 })
    await w.first
    dns.failing = true
    const asked = dns.queries.get('flaky.test A') ?? 0
    await eventually(() => (dns.queries.get('flaky.test A') ?? 0) > asked, { timeout: 10_000 })
    dns.failing = false
    assert.equal(w.lists.length, 1)
    dns.records.delete('flaky.test')
    await eventually(() => assert.deepEqual(w.urls(), []), { timeout: 10_000 })
  })

  it('reads SRV: lowest priority only, ports from the records, weight 0 as 1, big weights scaled', async () => {
    dns.records.set('_http._tcp.srv.test', {
      SRV: [
        { priority: 1, weight: 2000, port: 9001, target: 'h.test' },
        { priority: 1, weight: 500, port: 9002, target: 'h.test' },
        { priority: 1, weight: 0, port: 9003, target: '127.0.0.5' },
        { priority: 2, weight: 10, port: 9004, target: 'h.test' },
      ],
    })
    dns.records.set('h.test', { A: ['127.0.0.2'], ttl: 60 })
    const w = watch({ name: '_http._tcp.srv.test', type: 'SRV', port: null })
    await w.first
    assert.deepEqual(
      w.lists.at(-1)?.map((t) => [t.url, t.weight]),
      [
        ['http://127.0.0.2:9001', 1000],
        ['http://127.0.0.2:9002', 250],
        ['http://127.0.0.5:9003', 1],
      ],
    )
  })

  it('drops an SRV host that has no address', async () => {
    dns.records.set('_http._tcp.gone.test', {
      SRV: [
        { priority: 1, weight: 1, port: 9001, target: 'h.test' },
        { priority: 1, weight: 1, port: 9002, target: 'nowhere.test' },
      ],
    })
    const w = watch({ name: '_http._tcp.gone.test', type: 'SRV', port: null })
    await w.first
    assert.deepEqual(w.urls(), ['http://127.0.0.2:9001'])
  })

  it('asks nothing after stop', async () => {
    dns.records.set('stop.test', { A: ['127.0.0.2'], ttl: 1 })
    const w = watch({ name: 'stop.test', intervalMs: 1000 })
    await w.first
    w.source.stop()
    const asked = dns.queries.get('stop.test A')
    // Another source's re-resolution (1s TTL) shows time has passed.
    const other = dns.queries.get('a.test A') ?? 0
    await eventually(() => (dns.queries.get('a.test A') ?? 0) >= other + 2, { timeout: 10_000 })
    assert.equal(dns.queries.get('stop.test A'), asked)
  })
})
