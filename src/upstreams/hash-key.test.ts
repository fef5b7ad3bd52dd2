import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { HashKeyConfig } from '../config/types.ts'
import type { RequestContext } from '../pipeline/context.ts'
import { cookieValue, hashKeyOf, queryValue } from './hash-key.ts'

function request(parts: { headers?: Record<string, string | string[]>; query?: string; path?: string }) {
  return {
    clientIp: '192.0.2.7',
    path: parts.path ?? '/a/b',
    query: parts.query ?? '',
    req: { headers: parts.headers ?? {} },
  } as unknown as RequestContext
}

describe('hash key of a request', () => {
  const header: HashKeyConfig = { from: 'header', name: 'x-tenant' }
  const cookie: HashKeyConfig = { from: 'cookie', name: 'sid' }
  const query: HashKeyConfig = { from: 'query', name: 'user' }

  it('reads the client address and the path', () => {
    assert.equal(hashKeyOf(request({}), { from: 'ip' }), '192.0.2.7')
    assert.equal(hashKeyOf(request({ path: '/x' }), { from: 'path' }), '/x')
  })

  it('reads a header (the first of repeated ones)', () => {
    assert.equal(hashKeyOf(request({ headers: { 'x-tenant': 'acme' } }), header), 'acme')
    assert.equal(hashKeyOf(request({ headers: { 'x-tenant': ['one', 'two'] } }), header), 'one')
  })

  it('reads a cookie by exact name, quoted or not', () => {
    assert.equal(hashKeyOf(request({ headers: { cookie: 'xsid=1; sid=abc; sidx=2' } }), cookie), 'abc')
    assert.equal(cookieValue('a=1;sid="q v"', 'sid'), 'q v')
    assert.equal(cookieValue('sidx=1; asid=2', 'sid'), null)
    assert.equal(cookieValue(null, 'sid'), null)
  })

  it('reads a query parameter, decoded, the first when repeated', () => {
    assert.equal(hashKeyOf(request({ query: 'a=1&user=bob&user=eve' }), query), 'bob')
    assert.equal(queryValue('user=a%20b', 'user'), 'a b')
    assert.equal(queryValue('user=a+b', 'user'), 'a b')
    assert.equal(queryValue('user=%zz', 'user'), '%zz')
    assert.equal(queryValue('username=x&user', 'user'), '')
    assert.equal(queryValue('username=x', 'user'), null)
  })

  it('falls back to the client address when the key is missing or empty', () => {
    assert.equal(hashKeyOf(request({}), header), '192.0.2.7')
    assert.equal(hashKeyOf(request({ headers: { 'x-tenant': '' } }), header), '192.0.2.7')
    assert.equal(hashKeyOf(request({ headers: { cookie: 'other=1' } }), cookie), '192.0.2.7')
    assert.equal(hashKeyOf(request({ query: 'user=' }), query), '192.0.2.7')
  })
})
