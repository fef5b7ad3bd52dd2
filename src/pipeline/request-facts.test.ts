import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createIpMatcher } from '../net/ip.ts'
import { clientIpFrom, hostOnly, normalizePath, requestIdFrom, splitTarget } from './request-facts.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('normalizePath', () => {
  it('returns plain paths as they are', () => {
    for (const path of ['/', '/users/1', '/a-b_c~d.e', '/users/']) assert.equal(normalizePath(path), path)
  })

  it('removes dot-segments (RFC 3986 §5.2.4)', () => {
    assert.equal(normalizePath('/public/../admin'), '/admin')
    assert.equal(normalizePath('/a/./b'), '/a/b')
    assert.equal(normalizePath('/a/b/..'), '/a/')
    assert.equal(normalizePath('/a/b/.'), '/a/b/')
    assert.equal(normalizePath('/../../etc/passwd'), '/etc/passwd')
    assert.equal(normalizePath('/..'), '/')
    assert.equal(normalizePath('/a/..b/.c'), '/a/..b/.c', 'dots inside a name are not dot-segments')
    assert.equal(normalizePath('/.well-known/x'), '/.well-known/x')
  })

  it('decodes %2e like a dot, in any case', () => {
    assert.equal(normalizePath('/public/%2e%2e/admin'), '/admin')
    assert.equal(normalizePath('/public/%2E./admin'), '/admin')
    assert.equal(normalizePath('/a/%2e/b'), '/a/b')
  })

  it('decodes escaped unreserved characters and upper-cases the other escapes (RFC 3986 §6.2.2)', () => {
    assert.equal(normalizePath('/%61dmin'), '/admin')
    assert.equal(normalizePath('/%7Euser/%2d'), '/~user/-')
    assert.equal(normalizePath('/a%2fb'), '/a%2Fb', 'an escaped slash stays escaped: it is not a separator')
    assert.equal(normalizePath('/caf%c3%a9'), '/caf%C3%A9')
    assert.equal(normalizePath('/100%25'), '/100%25', 'never decoded twice')
    assert.equal(normalizePath('/%252e%252e/x'), '/%252e%252e/x')
    assert.equal(normalizePath('/bad%zz%4'), '/bad%zz%4', 'broken escapes are left for the target to refuse')
  })

  it('merges runs of slashes, before removing dot-segments', () => {
    assert.equal(normalizePath('//admin'), '/admin')
    assert.equal(normalizePath('/a///b//'), '/a/b/')
    assert.equal(normalizePath('/a//../b'), '/b')
  })
})

describe('hostOnly', () => {
  it('drops the port, lower-cases and drops a final dot', () => {
    assert.equal(hostOnly('Example.COM:8080'), 'example.com')
    assert.equal(hostOnly('example.com.'), 'example.com')
    assert.equal(hostOnly('[::1]:8080'), '[::1]')
    assert.equal(hostOnly('[::1]'), '[::1]')
    assert.equal(hostOnly('127.0.0.1:80'), '127.0.0.1')
    assert.equal(hostOnly(undefined), '')
    assert.equal(hostOnly(''), '')
  })
})

describe('requestIdFrom', () => {
  it('keeps a short, plain id', () => {
    assert.equal(requestIdFrom('abc-123'), 'abc-123')
    assert.equal(requestIdFrom('trace:00-ab/cd=+@.x_y'), 'trace:00-ab/cd=+@.x_y')
    assert.equal(requestIdFrom('x'.repeat(200)), 'x'.repeat(200))
  })

  it('replaces a missing, long, odd or repeated id with a UUID', () => {
    for (const value of [undefined, '', 'x'.repeat(201), 'a b', 'a\tb', 'id"<script>', 'é', ['a', 'b']]) {
      const id = requestIdFrom(value)
      assert.match(id, UUID, JSON.stringify(value))
    }
    assert.notEqual(requestIdFrom(undefined), requestIdFrom(undefined))
  })
})

describe('clientIpFrom', () => {
  const none = createIpMatcher([])
  const proxies = createIpMatcher(['127.0.0.1', '10.0.0.0/8', 'fd00::/8'])

  it('is the peer when no proxy is trusted, whatever X-Forwarded-For says', () => {
    assert.equal(clientIpFrom('127.0.0.1', '6.6.6.6', none), '127.0.0.1')
  })

  it('is the peer when the peer is not trusted', () => {
    assert.equal(clientIpFrom('203.0.113.9', '6.6.6.6', proxies), '203.0.113.9')
  })

  it('is the peer when a trusted peer sends no X-Forwarded-For', () => {
    assert.equal(clientIpFrom('127.0.0.1', undefined, proxies), '127.0.0.1')
  })

  it('walks X-Forwarded-For right to left, skipping trusted hops', () => {
    assert.equal(clientIpFrom('127.0.0.1', '198.51.100.7', proxies), '198.51.100.7')
    assert.equal(clientIpFrom('127.0.0.1', '6.6.6.6, 198.51.100.7, 10.1.2.3', proxies), '198.51.100.7')
    assert.equal(clientIpFrom('10.0.0.1', ['6.6.6.6, 198.51.100.7', '10.9.9.9'], proxies), '198.51.100.7')
  })

  it('is the leftmost hop when every hop is trusted', () => {
    assert.equal(clientIpFrom('127.0.0.1', '10.0.0.5, 10.0.0.6', proxies), '10.0.0.5')
  })

  it('reads IPv6, bracketed and ported entries, and IPv4-mapped ones', () => {
    assert.equal(clientIpFrom('127.0.0.1', '2001:db8::1', proxies), '2001:db8::1')
    assert.equal(clientIpFrom('127.0.0.1', '[2001:db8::2]:4711', proxies), '2001:db8::2')
    assert.equal(clientIpFrom('127.0.0.1', '198.51.100.7:1234', proxies), '198.51.100.7')
    assert.equal(clientIpFrom('127.0.0.1', '::ffff:198.51.100.8', proxies), '198.51.100.8')
    assert.equal(clientIpFrom('::ffff:127.0.0.1', '198.51.100.9', proxies), '198.51.100.9')
    assert.equal(clientIpFrom('127.0.0.1', '2001:db8::3, fd00::1', proxies), '2001:db8::3')
  })

  it('stops at an entry that is not an address and uses the nearest trusted hop', () => {
    assert.equal(clientIpFrom('127.0.0.1', 'unknown', proxies), '127.0.0.1')
    assert.equal(clientIpFrom('127.0.0.1', '198.51.100.7, garbage, 10.0.0.4', proxies), '10.0.0.4')
    assert.equal(clientIpFrom('127.0.0.1', ' , 198.51.100.7 ,', proxies), '198.51.100.7')
  })
})

describe('splitTarget', () => {
  it('splits origin-form into path and query', () => {
    assert.deepEqual(splitTarget('/a/b?x=1&y'), { path: '/a/b', query: 'x=1&y', authority: null })
    assert.deepEqual(splitTarget('/'), { path: '/', query: '', authority: null })
  })
  it('takes the authority of the absolute form (RFC 9112 §3.2.2)', () => {
    assert.deepEqual(splitTarget('http://api.example.com:8080/users?id=1'), {
      path: '/users',
      query: 'id=1',
      authority: 'api.example.com:8080',
    })
    assert.deepEqual(splitTarget('HTTPS://example.com'), { path: '/', query: '', authority: 'example.com' })
    assert.deepEqual(splitTarget('http://example.com?q'), { path: '/', query: 'q', authority: 'example.com' })
  })
  it('leaves other forms for accept() to refuse', () => {
    assert.equal(splitTarget('*').authority, null)
    assert.equal(splitTarget('*').path, '*')
    assert.equal(splitTarget('example.com:443').path, 'example.com:443')
    assert.equal(splitTarget('http://user@evil/').authority, null)
  })
})
