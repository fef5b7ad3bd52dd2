/**
 * The plugin system, through a real gateway: phase order, async handlers,
 * errors, local answers, scopes, ordering, null chains, the create/close
 * lifecycle across reloads and onComplete. Uses test-only plugins registered
 * next to the built-ins, placed in the order with `order` (pipeline/phases.ts).
 */
import assert from 'node:assert/strict'
import type { ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { type Static, Type } from '@sinclair/typebox'
import pino from 'pino'
import { Client, request } from 'undici'
import { GatehouseError } from '../../src/errors.ts'
import type { RequestContext } from '../../src/pipeline/context.ts'
import { PLUGIN_ORDER, resolvePluginOrder } from '../../src/pipeline/phases.ts'
import {
  definePlugin,
  type PluginDefinition,
  type PluginHandlers,
  type ResponseHead,
} from '../../src/pipeline/plugin.ts'
import { sendLocal } from '../../src/pipeline/reply.ts'
import { builtinPlugins } from '../../src/plugins/index.ts'
import { eventually } from '../helpers/eventually.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

// ---- What the test plugins saw, by request id (the test's own record, not plugin state).

const events = new Map<string, string[]>()
const completedStatus = new Map<string, number>()
function record(id: string, what: string): void {
  const list = events.get(id) ?? []
  list.push(what)
  events.set(id, list)
}
let nextId = 0
const newId = () => `plugins-test-${++nextId}`

// ---- A tracer: every phase, configurable to be async, throw, or answer locally.

const Phase = Type.Union(
  [
    'onRequest',
    'authenticate',
    'authorize',
    'transformRequest',
    'onUpstreamResponse',
    'transformResponse',
    'onComplete',
  ].map((p) => Type.Literal(p)),
)
const TracerConfig = Type.Object(
  {
    async: Type.Optional(Type.Boolean()),
    throwAt: Type.Optional(Phase),
    throwKind: Type.Optional(Type.Union([Type.Literal('gatehouse'), Type.Literal('plain')])),
    answerAt: Type.Optional(Phase),
    /** Sets a header value Node refuses to send (a line break) in transformResponse. */
    badHeader: Type.Optional(Type.Boolean()),
    /** No handlers at all: an override that turns the plugin off for a route. */
    silent: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
)
type TracerConfig = Static<typeof TracerConfig>

function tracer(name: string, order: PluginDefinition['order']) {
  return definePlugin<TracerConfig>({
    name,
    order,
    schema: TracerConfig,
    create(config) {
      if (config.silent) return {}
      const fail = (phase: string) => {
        if (config.throwAt !== phase) return
        if (config.throwKind === 'plain') throw new Error(`boom in ${name}.${phase}`)
        throw new GatehouseError('GH_BAD_REQUEST', `${name} refused at ${phase}`, {
          headers: { 'x-refused-by': name },
        })
      }
      const act = (ctx: RequestContext, phase: string) => {
        record(ctx.requestId, `${name}.${phase}`)
        fail(phase)
        if (config.answerAt === phase)
          sendLocal(ctx, 299, { 'content-type': 'text/plain' }, `answered by ${name} at ${phase}`)
      }
      const requestHandler = (phase: string) =>
        config.async
          ? async (ctx: RequestContext) => {
              await new Promise((resolve) => setImmediate(resolve))
              act(ctx, phase)
            }
          : (ctx: RequestContext) => act(ctx, phase)
      const responseHandler = (phase: string) => (ctx: RequestContext, head: ResponseHead) => {
        record(ctx.requestId, `${name}.${phase}`)
        fail(phase)
        if (config.badHeader && phase === 'transformResponse')
          head.headers['x-bad'] = 'line\r\nbreak: injected'
        const trace = head.headers['x-trace']
        head.headers['x-trace'] = trace === undefined ? `${name}.${phase}` : `${trace},${name}.${phase}`
      }
      return {
        onRequest: requestHandler('onRequest'),
        authenticate: requestHandler('authenticate'),
        authorize: requestHandler('authorize'),
        transformRequest: requestHandler('transformRequest'),
        onUpstreamResponse: responseHandler('onUpstreamResponse'),
        transformResponse: responseHandler('transformResponse'),
        onComplete(ctx) {
          record(ctx.requestId, `${name}.onComplete`)
          completedStatus.set(`${name}:${ctx.requestId}`, ctx.status)
          if (config.throwAt === 'onComplete') {
            // Tries to change what was sent, then throws: neither may reach the client.
            sendLocal(ctx, 418, {}, 'changed by onComplete')
            throw new Error(`boom in ${name}.onComplete`)
          }
        },
      }
    },
  })
}

// ---- A scoped plugin with a lifecycle: records create and close by label.

const lifecycle: string[] = []
const ScopeConfig = Type.Object(
  { label: Type.String(), failCreate: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
)
const scoped = definePlugin<Static<typeof ScopeConfig>>({
  name: 'test-scope',
  order: { before: 'security-headers' },
  schema: ScopeConfig,
  create(config): PluginHandlers {
    if (config.failCreate) throw new Error(`cannot create ${config.label}`)
    lifecycle.push(`create ${config.label}`)
    return {
      transformResponse(_ctx, head) {
        head.headers['x-scope'] = config.label
      },
      async close() {
        await new Promise((resolve) => setImmediate(resolve))
        lifecycle.push(`close ${config.label}`)
      },
    }
  },
})

const first = tracer('test-first', { after: 'ip-restriction' })
const second = tracer('test-second', { after: 'test-first' })
const testPlugins = new Map<string, PluginDefinition<never>>([
  ...builtinPlugins(),
  ...[first, second, scoped].map((p) => [p.name, p as PluginDefinition<never>] as const),
])

const REQUEST_PHASES = ['onRequest', 'authenticate', 'authorize', 'transformRequest']
/** The full trace of one proxied request through test-first then test-second. */
const FULL_TRACE = [
  ...REQUEST_PHASES.flatMap((p) => [`test-first.${p}`, `test-second.${p}`]),
  'upstream',
  'test-second.onUpstreamResponse',
  'test-first.onUpstreamResponse',
  'test-second.transformResponse',
  'test-first.transformResponse',
  'test-first.onComplete',
  'test-second.onComplete',
]

/** One request with a fresh id; resolves once `completions` onComplete handlers have run. */
async function traced(gw: TestGateway, path: string, completions = 2) {
  const id = newId()
  const res = await request(`${gw.url()}${path}`, { headers: { 'x-request-id': id } })
  const text = await res.body.text()
  // onComplete runs when the response closes, just after the client has it.
  await eventually(
    () => (events.get(id) ?? []).filter((e) => e.endsWith('.onComplete')).length >= completions,
  )
  return { id, status: res.statusCode, headers: res.headers, text, trace: events.get(id)! }
}

describe('plugin order', () => {
  it('places extensions next to their anchor; PLUGIN_ORDER stays the order of the built-ins', () => {
    const order = resolvePluginOrder(testPlugins.values())
    assert.deepEqual(order, ['ip-restriction', 'test-first', 'test-second', 'test-scope', 'security-headers'])
    assert.deepEqual(
      order.filter((name) => PLUGIN_ORDER.includes(name)),
      PLUGIN_ORDER,
    )
  })

  it('refuses plugins it cannot place, naming them', () => {
    const plugin = (name: string, order?: PluginDefinition['order']) => ({ name, order })
    assert.throws(() => resolvePluginOrder([plugin('stray')]), /plugin stray has no place/)
    assert.throws(
      () => resolvePluginOrder([plugin('ip-restriction', { after: 'security-headers' })]),
      /ip-restriction is in PLUGIN_ORDER and cannot declare another place/,
    )
    assert.throws(
      () =>
        resolvePluginOrder([
          plugin('a', { after: 'ip-restriction' }),
          plugin('b', { after: 'ip-restriction' }),
        ]),
      /plugins a and b both claim the place after ip-restriction/,
    )
    assert.throws(
      () => resolvePluginOrder([plugin('a', { before: 'nope' })]),
      /plugin a is placed next to nope/,
    )
    assert.throws(
      () => resolvePluginOrder([plugin('a', { after: 'b' }), plugin('b', { after: 'a' })]),
      /neither in PLUGIN_ORDER nor placed itself/,
    )
  })

  it('refuses to start a gateway with a plugin that has no place', async () => {
    const stray = definePlugin({ name: 'stray', schema: Type.Object({}), create: () => ({}) })
    await assert.rejects(
      startGateway(
        'listeners: [{port: 0, host: 127.0.0.1}]\nroutes: []\n',
        {},
        {
          plugins: new Map([...builtinPlugins(), ['stray', stray as PluginDefinition<never>]]),
        },
      ),
      /plugin stray has no place in the plugin order/,
    )
  })
})

describe('plugin phases', () => {
  let app: Upstream
  let gw: TestGateway
  const held: ServerResponse[] = []
  const logged: Record<string, unknown>[] = []
  before(async () => {
    app = await startUpstream('app', (req, res) => {
      record(String(req.headers['x-request-id']), 'upstream')
      if (req.url === '/hang') {
        held.push(res)
        return
      }
      req.resume()
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('from upstream')
    })
    const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line)) })
    const withFirst = (config: string) => `[test-second, {name: test-first, config: ${config}}]`
    gw = await startGateway(
      `
listeners: [{port: 0, host: 127.0.0.1}]
services: {app: {targets: [${app.url}]}}
global:
  plugins: [test-second]
routes:
  # Listed second-then-first on purpose: the order comes from the plugin order, not the file.
  - {name: sync, path: /sync, service: app, plugins: [test-second, test-first]}
  - {name: async, path: /async, service: app, plugins: [{name: test-second, config: {async: true}}, {name: test-first, config: {async: true}}]}
  - {name: mixed, path: /mixed, service: app, plugins: ${withFirst('{async: true}')}}
  - {name: cross-scope, path: /cross-scope, service: app, plugins: [test-first]}
  - {name: gh-error, path: /gh-error, service: app, plugins: ${withFirst('{throwAt: authorize}')}}
  - {name: plain-error, path: /plain-error, service: app, plugins: ${withFirst('{throwAt: transformRequest, throwKind: plain}')}}
  - {name: async-plain-error, path: /async-plain-error, service: app, plugins: ${withFirst('{async: true, throwAt: authenticate, throwKind: plain}')}}
  - {name: answer-onRequest, path: /answer/onRequest, service: app, plugins: ${withFirst('{answerAt: onRequest}')}}
  - {name: answer-authenticate, path: /answer/authenticate, service: app, plugins: ${withFirst('{answerAt: authenticate}')}}
  - {name: answer-authorize, path: /answer/authorize, service: app, plugins: ${withFirst('{answerAt: authorize, async: true}')}}
  - {name: answer-transformRequest, path: /answer/transformRequest, service: app, plugins: ${withFirst('{answerAt: transformRequest}')}}
  - {name: upstream-response-error, path: /upstream-response-error, service: app, plugins: ${withFirst('{throwAt: onUpstreamResponse}')}}
  - {name: transform-response-error, path: /transform-response-error, service: app, plugins: ${withFirst('{throwAt: transformResponse, throwKind: plain}')}}
  - {name: complete-misbehaves, path: /complete-misbehaves, service: app, plugins: ${withFirst('{throwAt: onComplete}')}}
  - {name: hang, path: /hang, service: app, plugins: [test-second, test-first]}
  - {name: bad-header, path: /bad-header, respond: {status: 200, body: fine}, plugins: ${withFirst('{badHeader: true}')}}
  - {name: silenced, path: /silenced, respond: {status: 200, body: quiet}, plugins: [{name: test-second, config: {silent: true}}]}
  - {name: bare, path: /bare, respond: {status: 204}, plugins: [{name: security-headers, config: {hsts: false}}]}
`,
      {},
      { plugins: testPlugins, logger },
    )
  })
  after(async () => {
    for (const res of held) res.destroy()
    await gw.stop()
    await app.close()
  })

  it('runs the phases in the documented order, response phases in reverse plugin order', async () => {
    const res = await traced(gw, '/sync')
    assert.equal(res.status, 200)
    assert.equal(res.text, 'from upstream')
    assert.deepEqual(res.trace, FULL_TRACE)
    assert.equal(
      res.headers['x-trace'],
      'test-second.onUpstreamResponse,test-first.onUpstreamResponse,test-second.transformResponse,test-first.transformResponse',
    )
  })

  it('awaits async handlers, alone or mixed with synchronous ones', async () => {
    for (const path of ['/async', '/mixed']) {
      const res = await traced(gw, path)
      assert.equal(res.status, 200, path)
      assert.deepEqual(res.trace, FULL_TRACE, path)
    }
  })

  it('orders plugins attached at different scopes by the plugin order too', async () => {
    // test-second comes from global, test-first from the route.
    const res = await traced(gw, '/cross-scope')
    assert.deepEqual(res.trace, FULL_TRACE)
    // A request that matches no route runs the global plugins.
    const miss = await traced(gw, '/nowhere', 1)
    assert.equal(miss.status, 404)
    assert.deepEqual(miss.trace, [
      ...REQUEST_PHASES.map((p) => `test-second.${p}`),
      'test-second.transformResponse',
      'test-second.onComplete',
    ])
  })

  it('does not fall back to the global instance when a route override has no handler for a phase', async () => {
    const id = newId()
    const res = await request(`${gw.url()}/silenced`, { headers: { 'x-request-id': id } })
    assert.equal(await res.body.text(), 'quiet')
    assert.equal(res.headers['x-trace'], undefined)
    // A later request's onComplete has run, so this one's would have too.
    await traced(gw, '/sync')
    assert.equal(events.get(id), undefined)
    const chains = gw.gateway.runtime.routes.find((r) => r.name === 'silenced')!.chains
    assert.ok(Object.values(chains).every((chain) => chain === null))
  })

  it('turns a GatehouseError into its problem, stops the phases and keeps the target out', async () => {
    const res = await traced(gw, '/gh-error')
    assert.equal(res.status, 400)
    assert.equal(res.headers['x-refused-by'], 'test-first')
    assert.equal(res.headers['content-type'], 'application/problem+json')
    const problem = JSON.parse(res.text)
    assert.equal(problem.code, 'GH_BAD_REQUEST')
    assert.equal(problem.detail, 'test-first refused at authorize')
    assert.equal(problem.requestId, res.id)
    assert.deepEqual(res.trace, [
      'test-first.onRequest',
      'test-second.onRequest',
      'test-first.authenticate',
      'test-second.authenticate',
      'test-first.authorize',
      // The error reply still gets the response headers, in reverse order.
      'test-second.transformResponse',
      'test-first.transformResponse',
      'test-first.onComplete',
      'test-second.onComplete',
    ])
    assert.equal(completedStatus.get(`test-first:${res.id}`), 400)
  })

  it('answers 500 GH_INTERNAL for a plain Error, sync or async, and logs it', async () => {
    for (const [path, phase] of [
      ['/plain-error', 'transformRequest'],
      ['/async-plain-error', 'authenticate'],
    ]) {
      const res = await traced(gw, path)
      assert.equal(res.status, 500, path)
      const problem = JSON.parse(res.text)
      assert.equal(problem.code, 'GH_INTERNAL')
      assert.equal(problem.type, 'urn:gatehouse:problem:internal-error')
      // The cause stays in the log, not in the reply.
      assert.doesNotMatch(res.text, /boom/)
      assert.ok(!res.trace.includes('upstream'))
      assert.equal(completedStatus.get(`test-first:${res.id}`), 500)
      const line = logged.find((l) => l.reqId === res.id)
      assert.ok(line, `an error line for ${res.id}`)
      assert.equal(line.level, 50)
      assert.equal((line.err as { message: string }).message, `boom in test-first.${phase}`)
    }
  })

  it('lets any phase before handle answer locally; later request phases and the target see nothing', async () => {
    for (const phase of REQUEST_PHASES) {
      const upstreamSeen = app.requests.length
      const res = await traced(gw, `/answer/${phase}`)
      assert.equal(res.status, 299, phase)
      assert.equal(res.text, `answered by test-first at ${phase}`)
      assert.equal(res.headers['x-request-id'], res.id)
      assert.equal(app.requests.length, upstreamSeen, `${phase}: the target got a request`)
      const upTo = FULL_TRACE.indexOf(`test-first.${phase}`)
      assert.deepEqual(res.trace, [
        ...FULL_TRACE.slice(0, upTo + 1),
        'test-second.transformResponse',
        'test-first.transformResponse',
        'test-first.onComplete',
        'test-second.onComplete',
      ])
      assert.equal(res.headers['x-trace'], 'test-second.transformResponse,test-first.transformResponse')
    }
  })

  it('turns an error in a response phase into a problem reply', async () => {
    const gh = await traced(gw, '/upstream-response-error')
    assert.equal(gh.status, 400)
    assert.equal(JSON.parse(gh.text).code, 'GH_BAD_REQUEST')
    assert.equal(JSON.parse(gh.text).detail, 'test-first refused at onUpstreamResponse')
    const plain = await traced(gw, '/transform-response-error')
    assert.equal(plain.status, 500)
    assert.equal(JSON.parse(plain.text).code, 'GH_INTERNAL')
    assert.ok(
      logged.some((l) => l.reqId === plain.id && /transformResponse/.test(String((l.err as Error)?.message))),
    )
  })

  it('answers 500 when a plugin sets a header value that cannot be sent, instead of cutting the connection', async () => {
    const res = await traced(gw, '/bad-header')
    assert.equal(res.status, 500)
    assert.equal(JSON.parse(res.text).code, 'GH_INTERNAL')
    assert.equal(res.headers['x-bad'], undefined)
    assert.equal(res.headers.injected, undefined)
    assert.equal(res.headers['x-request-id'], res.id)
    assert.ok(logged.some((l) => l.reqId === res.id && l.level === 50))
  })

  it('runs onComplete after the response; it cannot change it, and one failing does not stop the next', async () => {
    const client = new Client(gw.url())
    try {
      const id = newId()
      const res = await client.request({
        path: '/complete-misbehaves',
        method: 'GET',
        headers: { 'x-request-id': id },
      })
      assert.equal(res.statusCode, 200)
      assert.equal(await res.body.text(), 'from upstream')
      await eventually(() => events.get(id)?.includes('test-second.onComplete') === true)
      assert.deepEqual(events.get(id)!.slice(-2), ['test-first.onComplete', 'test-second.onComplete'])
      assert.equal(completedStatus.get(`test-first:${id}`), 200)
      await eventually(() => logged.some((l) => l.reqId === id && l.msg === 'onComplete handler failed'))
      // The connection was not cut: the next request on it is served.
      const again = await client.request({ path: '/sync', method: 'GET' })
      assert.equal(again.statusCode, 200)
      await again.body.dump()
    } finally {
      await client.close()
    }
  })

  it('runs onComplete when the client goes away before the response', async () => {
    const id = newId()
    const controller = new AbortController()
    const pending = request(`${gw.url()}/hang`, {
      headers: { 'x-request-id': id },
      signal: controller.signal,
    }).catch((error: Error) => error)
    await eventually(() => events.get(id)?.includes('upstream') === true)
    controller.abort()
    assert.ok((await pending) instanceof Error)
    await eventually(() => events.get(id)?.includes('test-second.onComplete') === true)
    assert.deepEqual(events.get(id)!.slice(-2), ['test-first.onComplete', 'test-second.onComplete'])
    // Nothing was sent, so there is no status to report.
    assert.equal(completedStatus.get(`test-first:${id}`), 0)
  })

  it('compiles a phase without handlers to null', () => {
    const routes = gw.gateway.runtime.routes
    const byName = (name: string) => routes.find((r) => r.name === name)!.chains
    const sync = byName('sync')
    for (const phase of Object.keys(sync) as (keyof typeof sync)[])
      assert.equal(sync[phase]?.length, 2, `sync.${phase}`)
    const bare = byName('bare')
    // test-second from global, security-headers from the route.
    assert.equal(bare.onRequest?.length, 1)
    assert.equal(bare.transformResponse?.length, 2)
    const global = gw.gateway.runtime.globalChains
    assert.equal(global.transformResponse?.length, 1)
  })
})

describe('plugin scopes and lifecycle', () => {
  let app: Upstream
  let other: Upstream
  let gw: TestGateway
  const config = (v: string, routeExtra = '') => `
listeners: [{port: 0, host: 127.0.0.1}]
services:
  scoped: {targets: [${app.url}], plugins: [{name: test-scope, config: {label: service-${v}}}]}
  plain: {targets: [${other.url}]}
global:
  plugins: [{name: test-scope, config: {label: global-${v}}}]
routes:
  - {name: route-scoped, path: /route, service: scoped, plugins: [{name: test-scope, config: {label: route-${v}}}]}
  - {name: service-scoped, path: /service, service: scoped}
  - {name: service-scoped-again, path: /again, service: scoped}
  - {name: global-scoped, path: /global, service: plain}
  - {name: no-plugins, path: /none, respond: {status: 204}}
${routeExtra}
`
  before(async () => {
    app = await startUpstream('app')
    other = await startUpstream('other')
    gw = await startGateway(config('v1'), {}, { plugins: testPlugins })
  })
  after(async () => {
    await gw.stop()
    await Promise.all([app.close(), other.close()])
  })

  const scopeOf = async (path: string) => {
    const res = await request(`${gw.url()}${path}`)
    await res.body.dump()
    return res.headers['x-scope']
  }

  it('lets the most specific attachment win per plugin name', async () => {
    assert.equal(await scopeOf('/route'), 'route-v1')
    assert.equal(await scopeOf('/service'), 'service-v1')
    assert.equal(await scopeOf('/again'), 'service-v1')
    assert.equal(await scopeOf('/global'), 'global-v1')
    assert.equal(await scopeOf('/none'), 'global-v1')
    assert.equal(await scopeOf('/nowhere'), 'global-v1')
  })

  it('creates each attachment once, at load (a service used by two routes included)', async () => {
    assert.deepEqual(lifecycle, ['create global-v1', 'create service-v1', 'create route-v1'])
    for (let i = 0; i < 3; i++) await scopeOf('/again')
    assert.equal(lifecycle.length, 3)
  })

  it('compiles the unused phases to null', () => {
    const chains = gw.gateway.runtime.routes.find((r) => r.name === 'no-plugins')!.chains
    assert.deepEqual(
      Object.entries(chains).map(([phase, handlers]) => [phase, handlers?.length ?? null]),
      [
        ['onRequest', null],
        ['authenticate', null],
        ['authorize', null],
        ['transformRequest', null],
        ['onUpstreamResponse', null],
        ['transformResponse', 1],
        ['onComplete', null],
      ],
    )
  })

  it('closes the old instances once a reload retires their snapshot, in reverse order of creation', async () => {
    lifecycle.length = 0
    await gw.write(config('v2'))
    const result = await gw.gateway.reload()
    assert.deepEqual(result, { ok: true, version: 2 })
    assert.equal(await scopeOf('/route'), 'route-v2')
    await eventually(() => lifecycle.length === 6)
    assert.deepEqual(lifecycle, [
      'create global-v2',
      'create service-v2',
      'create route-v2',
      'close route-v1',
      'close service-v1',
      'close global-v1',
    ])
  })

  it('refuses a reload whose plugin fails to create, closes those created so far, keeps serving', async () => {
    lifecycle.length = 0
    await gw.write(
      config(
        'v3',
        '  - {name: broken, path: /broken, service: plain, plugins: [{name: test-scope, config: {label: broken, failCreate: true}}]}',
      ),
    )
    const result = await gw.gateway.reload()
    assert.equal(result.ok, false)
    assert.match(
      (result as { error: Error }).error.message,
      /plugin test-scope \(route broken\) failed to start: cannot create broken/,
    )
    await eventually(() => lifecycle.length === 6)
    assert.deepEqual(lifecycle, [
      'create global-v3',
      'create service-v3',
      'create route-v3',
      'close route-v3',
      'close service-v3',
      'close global-v3',
    ])
    // The v2 snapshot still serves, its instances untouched.
    assert.equal(gw.gateway.runtime.version, 2)
    assert.equal(await scopeOf('/route'), 'route-v2')
    assert.equal(await scopeOf('/broken'), 'global-v2')
  })

  it('closes the current instances at stop', async () => {
    lifecycle.length = 0
    await gw.stop()
    assert.deepEqual(lifecycle, ['close route-v2', 'close service-v2', 'close global-v2'])
    // A second stop (after()) does nothing.
  })
})

describe('plugin create failing at start', () => {
  it('refuses to start and closes the instances created before the failure', async () => {
    lifecycle.length = 0
    await assert.rejects(
      startGateway(
        `
listeners: [{port: 0, host: 127.0.0.1}]
global: {plugins: [{name: test-scope, config: {label: start-global}}]}
routes:
  - {name: fine, path: /fine, respond: {status: 204}, plugins: [{name: test-scope, config: {label: start-route}}]}
  - {name: bad, path: /bad, respond: {status: 204}, plugins: [{name: test-scope, config: {label: nope, failCreate: true}}]}
`,
        {},
        { plugins: testPlugins },
      ),
      /plugin test-scope \(route bad\) failed to start: cannot create nope/,
    )
    await eventually(() => lifecycle.length === 4)
    assert.deepEqual(lifecycle, [
      'create start-global',
      'create start-route',
      'close start-route',
      'close start-global',
    ])
  })
})

describe('plugin close waits for the requests of its snapshot', () => {
  let app: Upstream
  let gw: TestGateway
  const held: ServerResponse[] = []
  before(async () => {
    app = await startUpstream('app', (_req, res) => {
      held.push(res)
    })
    gw = await startGateway(
      `
listeners: [{port: 0, host: 127.0.0.1}]
services: {app: {targets: [${app.url}]}}
routes: [{path: /, service: app, plugins: [{name: test-scope, config: {label: slow-v1}}]}]
`,
      {},
      { plugins: testPlugins },
    )
  })
  after(async () => {
    for (const res of held) res.destroy()
    await gw.stop()
    await app.close()
  })

  it('closes the retired instance only after its in-flight request ends', async () => {
    lifecycle.length = 0
    const pending = request(`${gw.url()}/`)
    await eventually(() => held.length === 1)
    await gw.write(`
listeners: [{port: 0, host: 127.0.0.1}]
services: {app: {targets: [${app.url}]}}
routes: [{path: /, service: app, plugins: [{name: test-scope, config: {label: slow-v2}}]}]
`)
    assert.equal((await gw.gateway.reload()).ok, true)
    assert.deepEqual(lifecycle, ['create slow-v2'])
    // Give the retirement a chance to (wrongly) close early: a second request runs on v2 meanwhile.
    const during = request(`${gw.url()}/`)
    await eventually(() => held.length === 2)
    assert.ok(!lifecycle.includes('close slow-v1'))
    held[0].end('done')
    const res = await pending
    assert.equal(res.headers['x-scope'], 'slow-v1')
    await res.body.dump()
    await eventually(() => lifecycle.includes('close slow-v1'))
    held[1].end('done')
    const second = await during
    assert.equal(second.headers['x-scope'], 'slow-v2')
    await second.body.dump()
  })
})
