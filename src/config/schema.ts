/**
 * The configuration schema, written once. It validates files at load, is
 * published as schema/gatehouse.schema.json for editors, and its descriptions
 * become docs/configuration.md. Plugin configs are validated by each plugin's
 * own schema (src/plugins/<name>/schema.ts) in a second pass.
 */
import { type Static, type TSchema, Type } from '@sinclair/typebox'
import { DURATION_PATTERN, SIZE_PATTERN } from './units.ts'

const Duration = (description: string, def: string) =>
  Type.String({ pattern: DURATION_PATTERN, description: `${description} Default ${def}.` })
const Size = (description: string, def: string) =>
  Type.Union([Type.String({ pattern: SIZE_PATTERN }), Type.Integer({ minimum: 0 })], {
    description: `${description} A size like 64kb or 1mb, or bytes. Default ${def}.`,
  })
const Strict = <T extends Record<string, TSchema>>(props: T, description: string) =>
  Type.Object(props, { additionalProperties: false, description })

const PluginName = Type.String({
  pattern: '^[a-z][a-z0-9-]*$',
  description: 'A plugin name, e.g. security-headers.',
})

export const PluginRef = Type.Union(
  [
    PluginName,
    Strict(
      {
        name: PluginName,
        config: Type.Optional(
          Type.Object(
            {},
            { additionalProperties: true, description: "The plugin's own settings; see its doc." },
          ),
        ),
      },
      'A plugin with settings for this place only.',
    ),
  ],
  {
    description:
      'A plugin by name (configured from the top-level `plugins` map, else with defaults) or as `{name, config}`.',
  },
)
const PluginList = Type.Array(PluginRef, {
  description: 'Plugins attached here; the most specific scope wins.',
})

const Limits = Strict(
  {
    maxHeaderSize: Type.Optional(
      Size('Largest request head (request line and headers); beyond it 431.', '16kb'),
    ),
    maxHeaderCount: Type.Optional(
      Type.Integer({ minimum: 1, description: 'Most request header fields; beyond it 431. Default 100.' }),
    ),
    maxUrlLength: Type.Optional(
      Type.Integer({
        minimum: 16,
        description: 'Longest request target in bytes; beyond it 414. Default 8192.',
      }),
    ),
    maxBodySize: Type.Optional(Size('Largest request body; beyond it 413. Routes may override.', '10mb')),
    headersTimeout: Type.Optional(
      Duration('Time to receive the whole request head (slowloris guard); then 408.', '10s'),
    ),
    requestTimeout: Type.Optional(
      Duration('Time to receive the whole request, body included; then 408.', '60s'),
    ),
    keepAliveTimeout: Type.Optional(
      Duration('How long an idle keep-alive client connection stays open.', '5s'),
    ),
    maxConnections: Type.Optional(
      Type.Integer({
        minimum: 1,
        description: 'Most open client connections on this listener. Default 10000.',
      }),
    ),
  },
  'Limits and timeouts that protect the listener; all on by default.',
)

const Certificate = Strict(
  {
    cert: Type.String({ description: 'Path of the PEM certificate chain.' }),
    key: Type.String({ description: 'Path of the PEM private key.' }),
    serverNames: Type.Optional(
      Type.Array(Type.String(), {
        description:
          'SNI names this certificate serves: exact (`api.example.com`) or one-label wildcards (`*.example.com`). Without it, the names come from the certificate (CN and subjectAltName DNS names).',
      }),
    ),
    default: Type.Optional(
      Type.Boolean({
        description:
          'Serve this certificate when no name matches (when none is marked, the first one). Default false.',
      }),
    ),
  },
  'A certificate and its key.',
)

const ListenerTls = Strict(
  {
    certificates: Type.Array(Certificate, {
      minItems: 1,
      description: 'Certificates, chosen per connection by SNI.',
    }),
    minVersion: Type.Optional(
      Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], {
        description: 'Oldest TLS version. Default TLSv1.2.',
      }),
    ),
    http2: Type.Optional(
      Type.Boolean({ description: 'Offer HTTP/2 by ALPN beside HTTP/1.1 on this port. Default true.' }),
    ),
  },
  'Terminate TLS on this listener.',
)

export const Listener = Strict(
  {
    name: Type.Optional(Type.String({ description: 'A name for logs. Default `http-PORT`.' })),
    host: Type.Optional(Type.String({ description: 'Address to bind. Default 0.0.0.0.' })),
    port: Type.Integer({
      minimum: 0,
      maximum: 65535,
      description: 'TCP port to listen on (0 picks a free one).',
    }),
    tls: Type.Optional(ListenerTls),
    redirectToHttps: Type.Optional(
      Strict(
        {
          port: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 65535,
              description: 'HTTPS port in the Location. Default 443.',
            }),
          ),
          status: Type.Optional(
            Type.Union([Type.Literal(301), Type.Literal(302), Type.Literal(307), Type.Literal(308)], {
              description: 'Redirect status. Default 308.',
            }),
          ),
        },
        'Answer every request on this (plain HTTP) listener with a redirect to HTTPS.',
      ),
    ),
    limits: Type.Optional(Limits),
  },
  'A port Gatehouse accepts connections on.',
)

export const Target = Type.Union(
  [
    Type.String({ description: 'Target URL, http:// or https://, with host and port.' }),
    Strict(
      {
        url: Type.String({ description: 'Target URL, http:// or https://.' }),
        backup: Type.Optional(
          Type.Boolean({ description: 'Serve only when every primary target is down. Default false.' }),
        ),
        drain: Type.Optional(
          Type.Boolean({
            description: 'Draining: no new requests, those in flight finish. Default false.',
          }),
        ),
        weight: Type.Optional(
          Type.Integer({
            minimum: 0,
            maximum: 1000,
            description: 'Relative share of requests; 0 takes the target out of rotation. Default 1.',
          }),
        ),
      },
      'A target with a weight.',
    ),
  ],
  { description: 'One copy of the service: a URL, or `{url, weight}`.' },
)

const HashKey = Type.Union(
  [
    Type.Literal('ip', { description: 'The client address (trusted-proxy aware).' }),
    Type.Literal('path', { description: 'The request path.' }),
    Strict({ header: Type.String({ description: 'Header name.' }) }, 'A request header.'),
    Strict({ cookie: Type.String({ description: 'Cookie name.' }) }, 'A request cookie.'),
    Strict({ query: Type.String({ description: 'Query parameter name.' }) }, 'A query parameter.'),
  ],
  { description: 'What a consistent hash is computed over: ip, path, {header}, {cookie} or {query}.' },
)

const Balancer = Type.Union(
  [
    Type.Literal('round-robin', { description: 'Smooth weighted round robin, as nginx does it.' }),
    Type.Literal('least-connections', { description: 'Fewest requests in flight relative to weight.' }),
    Type.Literal('ip-hash', { description: 'The client address picks the target.' }),
    Type.Literal('random', { description: 'Power of two random choices, weighted.' }),
    Type.Literal('ewma', {
      description: 'Latency-aware: peak EWMA of response time times requests in flight.',
    }),
    Strict(
      {
        algorithm: Type.Literal('consistent-hash', { description: 'Consistent hashing.' }),
        key: HashKey,
      },
      'Consistent hashing on a key: adding or removing one of N targets moves about 1/N of the keys.',
    ),
  ],
  {
    description:
      'How requests are spread: round-robin (default), least-connections, ip-hash, random, ewma, or {algorithm: consistent-hash, key}.',
  },
)

const Sticky = Type.Union(
  [
    Strict(
      {
        cookie: Strict(
          {
            name: Type.Optional(Type.String({ description: 'Cookie name. Default gh_sticky.' })),
            maxAge: Type.Optional(Duration('Cookie lifetime; without it a session cookie.', 'session')),
            secure: Type.Optional(
              Type.Boolean({ description: 'Mark the cookie Secure. Default true on HTTPS listeners.' }),
            ),
          },
          'Sticky by an opaque, HttpOnly, SameSite=Lax cookie naming the target.',
        ),
      },
      'Sticky by cookie.',
    ),
    Strict(
      {
        ip: Strict(
          {
            ttl: Type.Optional(
              Duration('How long a client address stays pinned after its last request.', '30m'),
            ),
          },
          'Sticky by client address.',
        ),
      },
      'Sticky by client address.',
    ),
  ],
  {
    description:
      'Keep a client on the target it first got; when that target is down the balancer picks again and the client is re-pinned.',
  },
)

const HealthCheck = Strict(
  {
    active: Type.Optional(
      Strict(
        {
          type: Type.Optional(
            Type.Union([Type.Literal('http'), Type.Literal('tcp')], {
              description: 'http (a request) or tcp (a connect). Default http.',
            }),
          ),
          method: Type.Optional(Type.String({ description: 'HTTP method. Default GET.' })),
          path: Type.Optional(Type.String({ description: 'HTTP path. Default /.' })),
          host: Type.Optional(Type.String({ description: "Host header. Default the target's host." })),
          expectStatus: Type.Optional(
            Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), {
              description: 'Statuses that count as healthy. Default 200-399.',
            }),
          ),
          bodyMatch: Type.Optional(Type.String({ description: 'A regex the response body must match.' })),
          interval: Type.Optional(
            Duration('Time between checks of one target (with up to 10% jitter).', '10s'),
          ),
          timeout: Type.Optional(Duration('A check slower than this fails.', '2s')),
          healthyThreshold: Type.Optional(
            Type.Integer({
              minimum: 1,
              description: 'Consecutive passes that bring a target back. Default 2.',
            }),
          ),
          unhealthyThreshold: Type.Optional(
            Type.Integer({
              minimum: 1,
              description: 'Consecutive failures that take a target out. Default 3.',
            }),
          ),
        },
        'Active checks, run once per process for every target.',
      ),
    ),
    passive: Type.Optional(
      Strict(
        {
          failures: Type.Optional(
            Type.Integer({
              minimum: 1,
              description: 'Failures within `window` that eject a target. Default 5.',
            }),
          ),
          window: Type.Optional(Duration('The window failures are counted in.', '10s')),
          statuses: Type.Optional(
            Type.Array(Type.Integer({ minimum: 500, maximum: 599 }), {
              description:
                'Response statuses that count as failures, beside connection failures and timeouts. Default [502, 503, 504].',
            }),
          ),
          ejectionTime: Type.Optional(
            Duration(
              'First ejection length; each further ejection doubles it, up to maxEjectionTime.',
              '30s',
            ),
          ),
          maxEjectionTime: Type.Optional(Duration('Longest ejection.', '5m')),
          maxEjectedPercent: Type.Optional(
            Type.Integer({
              minimum: 0,
              maximum: 100,
              description: 'Most targets (in percent, at least one) ejected at once. Default 50.',
            }),
          ),
        },
        'Passive checks (outlier ejection) from real traffic; an ejected target returns half-open after its ejection time.',
      ),
    ),
  },
  'How dead targets are found and taken out of rotation.',
)

const Retries = Strict(
  {
    attempts: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10,
        description:
          'Tries of one request in all (the first and its retries), each to a different target; 1 turns retries off. Default 2.',
      }),
    ),
    methods: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Z]+$' }), {
        description:
          'Methods that may be retried. Default the idempotent ones (RFC 9110 §9.2.2): GET, HEAD, OPTIONS, PUT, DELETE, TRACE.',
      }),
    ),
    on: Type.Optional(
      Type.Array(
        Type.Union([Type.Literal('connect-failure'), Type.Literal('reset'), Type.Literal('timeout')]),
        {
          description:
            'Failures that are retried: connect-failure (refused, connect timeout), reset (the connection closed before any response byte), timeout (no response head within perTryTimeout). Default all three.',
        },
      ),
    ),
    statuses: Type.Optional(
      Type.Array(Type.Integer({ minimum: 400, maximum: 599 }), {
        description: 'Response statuses that are retried (the response is dropped). Default [502, 503, 504].',
      }),
    ),
    perTryTimeout: Type.Optional(
      Duration('Time each try waits for its response head; then the next try.', 'timeouts.response'),
    ),
    backoff: Type.Optional(
      Strict(
        {
          base: Type.Optional(Duration('Backoff before the first retry is drawn from 0 to this.', '25ms')),
          max: Type.Optional(Duration('Largest backoff; it doubles per retry up to this.', '250ms')),
        },
        'Exponential backoff with full jitter between tries.',
      ),
    ),
    budget: Type.Optional(
      Strict(
        {
          percent: Type.Optional(
            Type.Integer({
              minimum: 0,
              maximum: 100,
              description: "Retries in flight as a share of the service's requests in flight. Default 20.",
            }),
          ),
          min: Type.Optional(
            Type.Integer({
              minimum: 0,
              description: 'Retries in flight always allowed, whatever the share. Default 3.',
            }),
          ),
        },
        'The retry budget (as Envoy): retries cannot multiply an outage.',
      ),
    ),
    bufferBody: Type.Optional(
      Size(
        'Request bodies up to this size are kept so a retry can resend them; larger ones stream and are never retried; 0 retries only requests without a body.',
        '64kb',
      ),
    ),
  },
  'Retries to another target. Without this key a request is retried once, on connect failure only, when it is idempotent and has no body.',
)

const CircuitBreaker = Strict(
  {
    failureRate: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100,
        description: 'Percent of failed attempts within `window` that opens the breaker. Default 50.',
      }),
    ),
    window: Type.Optional(
      Duration('The rolling window attempts are counted in (10 buckets of a tenth each).', '10s'),
    ),
    minRequests: Type.Optional(
      Type.Integer({
        minimum: 1,
        description: 'Attempts that must finish within `window` before the failure rate counts. Default 20.',
      }),
    ),
    openFor: Type.Optional(
      Duration(
        'How long the breaker stays open (clients get 503 with Retry-After) before trial requests go through.',
        '30s',
      ),
    ),
    halfOpenRequests: Type.Optional(
      Type.Integer({
        minimum: 1,
        description:
          'Trial requests in flight at once while half-open; that many successes close the breaker, one failure opens it again. Default 3.',
      }),
    ),
    statuses: Type.Optional(
      Type.Array(Type.Integer({ minimum: 500, maximum: 599 }), {
        description:
          'Response statuses that count as failures, beside connection failures, timeouts and invalid responses. Default [502, 503, 504].',
      }),
    ),
    perTarget: Type.Optional(
      Type.Boolean({
        description:
          'One breaker per target (an open target is taken out of rotation) instead of one for the whole service. Default false.',
      }),
    ),
  },
  'Circuit breaker: stop sending to a service (or target) that fails most requests, and test it again after a while.',
)

const Discovery = Type.Union(
  [
    Strict(
      {
        dns: Strict(
          {
            name: Type.String({ minLength: 1, description: 'The DNS name to resolve.' }),
            type: Type.Optional(
              Type.Union([Type.Literal('A'), Type.Literal('AAAA'), Type.Literal('SRV')], {
                description:
                  'A, AAAA (addresses; give port) or SRV (ports and weights from the records). Default A.',
              }),
            ),
            port: Type.Optional(
              Type.Integer({
                minimum: 1,
                maximum: 65535,
                description: 'Target port; required for A and AAAA.',
              }),
            ),
            scheme: Type.Optional(
              Type.Union([Type.Literal('http'), Type.Literal('https')], {
                description: 'Scheme of the discovered targets. Default http.',
              }),
            ),
            interval: Type.Optional(
              Duration(
                'Longest time between two resolutions (the record TTL, at least 1s, makes it shorter); also the period when the answer carries no TTL (SRV).',
                '30s',
              ),
            ),
            servers: Type.Optional(
              Type.Array(Type.String({ minLength: 1 }), {
                minItems: 1,
                description:
                  'DNS servers to ask, like 127.0.0.1:5353 or [::1]:53. Default the system resolver.',
              }),
            ),
          },
          'Targets from DNS records, re-resolved in the background.',
        ),
      },
      'DNS service discovery.',
    ),
    Strict(
      {
        file: Strict(
          {
            path: Type.String({
              minLength: 1,
              description:
                'JSON or YAML file holding a list of targets (as in targets), relative to this file.',
            }),
          },
          'Targets from a watched file; a bad file keeps the last good list.',
        ),
      },
      'File service discovery.',
    ),
  ],
  { description: 'Where the targets come from instead of a static list: {dns: {...}} or {file: {path}}.' },
)

export const Service = Strict(
  {
    targets: Type.Optional(
      Type.Array(Target, {
        minItems: 1,
        description: 'The copies of this service (or give discovery instead).',
      }),
    ),
    discovery: Type.Optional(Discovery),
    balancer: Type.Optional(Balancer),
    sticky: Type.Optional(Sticky),
    healthCheck: Type.Optional(HealthCheck),
    slowStart: Type.Optional(
      Duration(
        'A recovered or newly added target ramps from a small share to its full weight over this time; 0s turns it off.',
        '0s',
      ),
    ),
    panicThreshold: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 100,
        description:
          'When fewer than this percentage of the primary targets is healthy, balance over all primaries rather than overload the few (Envoy panic mode); 0 turns it off. Default 50.',
      }),
    ),
    circuitBreaker: Type.Optional(CircuitBreaker),
    timeouts: Type.Optional(
      Strict(
        {
          connect: Type.Optional(Duration('Time to open a connection to a target; then 504.', '5s')),
          response: Type.Optional(
            Duration('Time from sending the request to the response head; then 504.', '60s'),
          ),
          idle: Type.Optional(
            Duration('Longest silence while a response body streams; then the reply is aborted.', '60s'),
          ),
          total: Type.Optional(
            Duration(
              'Longest whole exchange, retries and backoff included: 504 if no response has started, else the client connection is cut; 0s turns it off.',
              '0s',
            ),
          ),
        },
        'Upstream timeouts; a route may override response, idle and total.',
      ),
    ),
    retries: Type.Optional(Retries),
    pool: Type.Optional(
      Strict(
        {
          connections: Type.Optional(
            Type.Integer({ minimum: 1, description: 'Most connections per target. Default 128.' }),
          ),
          keepAliveTimeout: Type.Optional(Duration('How long an idle upstream connection is kept.', '4s')),
        },
        'Connection pool per target (keep-alive).',
      ),
    ),
    tls: Type.Optional(
      Strict(
        {
          ca: Type.Optional(Type.String({ description: 'PEM file of CAs to trust for https:// targets.' })),
          serverName: Type.Optional(
            Type.String({ description: 'SNI name to send. Default the target host.' }),
          ),
          verify: Type.Optional(
            Type.Boolean({
              description: 'Verify the target certificate; turn this off only for tests. Default true.',
            }),
          ),
        },
        'TLS to https:// targets.',
      ),
    ),
    plugins: Type.Optional(PluginList),
  },
  'A backend service: its targets and how to reach them.',
)

const StringMatch = Type.Union(
  [
    Type.String({ description: 'Exact value.' }),
    Strict(
      { regex: Type.String({ description: 'Regular expression the value must match.' }) },
      'Value by regex.',
    ),
    Strict(
      { present: Type.Boolean({ description: 'true: must be there; false: must be absent.' }) },
      'Presence.',
    ),
  ],
  { description: 'An exact value, `{regex}` or `{present}`.' },
)

const Method = Type.String({ pattern: '^[A-Z]+$', description: 'An HTTP method in capitals.' })

export const Route = Strict(
  {
    name: Type.Optional(Type.String({ description: 'A name for logs and metrics. Default `route-N`.' })),
    host: Type.Optional(
      Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 })], {
        description: 'Host names: exact or `*.example.com` (one label). Default any host.',
      }),
    ),
    path: Type.String({
      description:
        'Path pattern. With `pathMatch: prefix` (default) it matches whole segments (`/users` matches `/users` and `/users/1`, not `/usersx`); `:name` captures a segment.',
    }),
    pathMatch: Type.Optional(
      Type.Union([Type.Literal('prefix'), Type.Literal('exact'), Type.Literal('regex')], {
        description:
          'How `path` matches: `prefix` (whole segments), `exact`, or `regex` (a JavaScript regex that must start with ^). Default prefix.',
      }),
    ),
    methods: Type.Optional(
      Type.Array(Method, { minItems: 1, description: 'Methods this route takes. Default any method.' }),
    ),
    headers: Type.Optional(
      Type.Record(Type.String(), StringMatch, {
        description: 'Request headers that must match (names are case-insensitive).',
      }),
    ),
    query: Type.Optional(
      Type.Record(Type.String(), StringMatch, { description: 'Query parameters that must match.' }),
    ),
    service: Type.Optional(Type.String({ description: 'Terminal `proxy`: the service to forward to.' })),
    redirect: Type.Optional(
      Strict(
        {
          to: Type.String({
            description: 'Location to send the client to; `:param` and `$1` are filled in.',
          }),
          status: Type.Optional(
            Type.Union(
              [Type.Literal(301), Type.Literal(302), Type.Literal(303), Type.Literal(307), Type.Literal(308)],
              {
                description: 'Redirect status. Default 302.',
              },
            ),
          ),
        },
        'Terminal `redirect`.',
      ),
    ),
    respond: Type.Optional(
      Strict(
        {
          status: Type.Optional(
            Type.Integer({ minimum: 200, maximum: 599, description: 'Response status. Default 200.' }),
          ),
          headers: Type.Optional(
            Type.Record(Type.String(), Type.String(), { description: 'Response headers.' }),
          ),
          body: Type.Optional(
            Type.Union(
              [Type.String(), Type.Object({}, { additionalProperties: true }), Type.Array(Type.Unknown())],
              {
                description: 'A string, or JSON (sent as application/json). Default empty.',
              },
            ),
          ),
        },
        'Terminal `respond`: a fixed answer.',
      ),
    ),
    stripPrefix: Type.Optional(
      Type.Boolean({
        description: 'Remove the matched prefix before forwarding (prefix routes). Default false.',
      }),
    ),
    rewrite: Type.Optional(
      Type.String({
        description:
          'Replace the matched part of the path (anchored at its start; the rest and the query are kept). Fills in `:param` captured by a prefix or exact path, and groups `$1`, `$<name>` of a regex path.',
      }),
    ),
    preserveHost: Type.Optional(
      Type.Boolean({
        description: "Send the client's Host upstream instead of the target's. Default false.",
      }),
    ),
    hostRewrite: Type.Optional(Type.String({ description: 'Send this Host upstream.' })),
    maxBodySize: Type.Optional(
      Size(
        "Largest request body on this route; overrides the listener's.",
        "the listener's limits.maxBodySize",
      ),
    ),
    timeouts: Type.Optional(
      Strict(
        {
          response: Type.Optional(
            Duration('Time from sending the request to the response head, per try.', "the service's"),
          ),
          idle: Type.Optional(Duration('Longest silence while a response body streams.', "the service's")),
          total: Type.Optional(
            Duration(
              'Longest whole exchange, retries and backoff included; 0s turns it off.',
              "the service's",
            ),
          ),
        },
        "Overrides of the service's timeouts for this route (connect is a pool setting, per service only).",
      ),
    ),
    plugins: Type.Optional(PluginList),
  },
  'A rule from request facts to one terminal: `service` (proxy), `redirect` or `respond`.',
)

export const GatehouseConfig = Strict(
  {
    $schema: Type.Optional(
      Type.String({ description: 'Path or URL of this JSON Schema, for editors; Gatehouse ignores it.' }),
    ),
    listeners: Type.Array(Listener, { minItems: 1, description: 'Ports to accept connections on.' }),
    services: Type.Optional(
      Type.Record(Type.String(), Service, { description: 'Backend services by name.' }),
    ),
    routes: Type.Array(Route, {
      description: 'Routes. Most specific match wins, then file order (docs/routing.md).',
    }),
    plugins: Type.Optional(
      Type.Record(Type.String(), Type.Object({}, { additionalProperties: true }), {
        description: 'Settings for plugins used by name, keyed by plugin name.',
      }),
    ),
    global: Type.Optional(
      Strict(
        {
          plugins: Type.Optional(PluginList),
          trustedProxies: Type.Optional(
            Type.Array(Type.String(), {
              description:
                'Addresses or CIDR ranges of proxies in front of Gatehouse whose X-Forwarded-For / Forwarded are believed. Default none.',
            }),
          ),
          requestIdHeader: Type.Optional(
            Type.String({ description: 'Header carrying the request id both ways. Default x-request-id.' }),
          ),
          hideUpstreamHeaders: Type.Optional(
            Type.Array(Type.String(), {
              description:
                'Response headers from targets not passed to clients. Default [server, x-powered-by].',
            }),
          ),
          gracePeriod: Type.Optional(
            Duration('On SIGTERM, how long in-flight requests may take to finish.', '30s'),
          ),
        },
        'Settings for every route.',
      ),
    ),
    workers: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1, maximum: 256 }), Type.Literal('auto')], {
        description:
          'Threads that serve requests, each listening on every port (SO_REUSEPORT): a number, or auto for the cores available to the process. 1 serves on the main thread. Default auto.',
      }),
    ),
    accessLog: Type.Optional(
      Type.Union(
        [
          Type.Literal('stdout'),
          Type.Literal('stderr'),
          Type.Literal('off'),
          Strict(
            { file: Type.String({ description: 'Path of the file to append JSON lines to.' }) },
            'A file.',
          ),
        ],
        {
          description:
            'Where one JSON line per request goes: stdout, stderr, off or `{file}`. Default stdout.',
        },
      ),
    ),
  },
  'A Gatehouse configuration file.',
)

export type RawConfig = Static<typeof GatehouseConfig>
export type RawRoute = Static<typeof Route>
export type RawService = Static<typeof Service>
export type RawTarget = Static<typeof Target>
export type RawListener = Static<typeof Listener>
export type RawPluginRef = Static<typeof PluginRef>
