/**
 * CLI entry only: flags, load config, start, signals. Exit codes (HELP and
 * docs/operations.md list them too):
 *   0 ok (validate passed, or a clean shutdown)
 *   1 the configuration has problems (each printed with file:line:column)
 *   2 usage error (unknown command or flag)
 *   3 could not start (e.g. port in use)
 *   4 Node.js too old (bin/gatehouse.js)
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { ConfigError, loadConfig } from './config/index.ts'
import type { Env } from './config/load.ts'
import { runDemo } from './demo/demo.ts'
import { Gateway, listenFailure } from './gateway.ts'
import { startBufferValve } from './observability/buffer-valve.ts'
import { builtinPlugins } from './plugins/index.ts'

export const EXIT = { ok: 0, config: 1, usage: 2, start: 3, node: 4 } as const

const HELP = `gatehouse: reverse proxy, load balancer and API gateway

Usage:
  gatehouse start -c FILE [--no-watch]   serve with the config in FILE (YAML or JSON)
  gatehouse validate -c FILE             check FILE and print every problem
  gatehouse demo                         three demo services and a gateway in front (GATEHOUSE_PORT, default 8080)
  gatehouse --version
  gatehouse --help

Signals (start, demo):
  SIGHUP           reload the config; if the new one is invalid the old one keeps serving
  SIGTERM, SIGINT  stop accepting, finish requests in flight within global.gracePeriod, exit 0
                   (a second SIGTERM or SIGINT while draining exits at once)
The config file is also watched and reloaded when it changes (unless --no-watch).

Environment: GATEHOUSE_LOG_LEVEL (info), and any \${VAR} the config file reads.

Exit codes:
  0  ok: validate passed, or a clean shutdown
  1  the configuration has problems (each printed as file:line:column)
  2  usage error: unknown command or flag, missing -c FILE
  3  could not start: e.g. a listener's port is in use
  4  Node.js too old (bin/gatehouse.js)
`

export async function main(argv: string[], env: Env): Promise<number> {
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(argv)
  } catch (error) {
    process.stderr.write(`gatehouse: ${(error as Error).message}\n\n${HELP}`)
    return EXIT.usage
  }
  const { values, positionals } = parsed
  if (values.version) {
    process.stdout.write(`${version()}\n`)
    return EXIT.ok
  }
  const command = positionals[0]
  if (values.help || command === 'help') {
    process.stdout.write(HELP)
    return EXIT.ok
  }
  if (command === undefined) {
    process.stderr.write(`gatehouse: give a command\n\n${HELP}`)
    return EXIT.usage
  }
  if (command === 'demo') return runDemo(env)
  if (command !== 'start' && command !== 'validate') {
    process.stderr.write(`gatehouse: unknown command ${JSON.stringify(command)}\n\n${HELP}`)
    return EXIT.usage
  }
  if (positionals.length > 1) {
    process.stderr.write(`gatehouse ${command}: unexpected argument ${JSON.stringify(positionals[1])}\n`)
    return EXIT.usage
  }
  const file = values.config
  if (file === undefined) {
    process.stderr.write(`gatehouse ${command}: give the config file with -c FILE\n`)
    return EXIT.usage
  }
  if (command === 'validate') return validate(file, env)
  return serve(file, env, { watch: values.watch })
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    allowNegative: true,
    options: {
      config: { type: 'string', short: 'c' },
      watch: { type: 'boolean', default: true },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  })
}

async function validate(file: string, env: Env): Promise<number> {
  try {
    const config = await loadConfig(file, { plugins: builtinPlugins(), env })
    const services = Object.keys(config.services).length
    process.stdout.write(
      `${file}: ok (${config.listeners.length} listener(s), ${services} service(s), ${config.routes.length} route(s))\n`,
    )
    return EXIT.ok
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`)
      return EXIT.config
    }
    throw error
  }
}

export interface ServeOptions {
  /** Reload when the config file changes (SIGHUP always reloads). */
  watch?: boolean
  /** Called once listening, e.g. by the demo to print where. */
  onReady?: (gateway: Gateway) => void
}

/** Starts a gateway and runs until SIGTERM/SIGINT; also used by the demo. */
export async function serve(file: string, env: Env, options: ServeOptions = {}): Promise<number> {
  const logger = pino(
    { base: null, level: env.GATEHOUSE_LOG_LEVEL ?? 'info', timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination(2),
  )
  // Installed before starting, so a SIGHUP during startup is not fatal (its default action):
  // it is remembered and served once listening. It stays on while draining, when reload refuses.
  let ready: Gateway | null = null
  let hupBeforeReady = false
  const onHup = () => {
    if (ready === null) {
      hupBeforeReady = true
      return
    }
    logger.info({ signal: 'SIGHUP' }, 'reloading')
    void ready.reload()
  }
  process.on('SIGHUP', onHup)
  let gateway: Gateway
  try {
    gateway = await Gateway.start({ configFile: file, env, logger })
  } catch (error) {
    process.off('SIGHUP', onHup)
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`)
      return EXIT.config
    }
    process.stderr.write(`gatehouse: could not start: ${listenFailure(error)}\n`)
    return EXIT.start
  }
  if (options.watch !== false) gateway.watch()
  const valve = startBufferValve()
  logger.info(
    { listeners: gateway.ports(), workers: gateway.workers?.size ?? 1, version: version(), pid: process.pid },
    'gatehouse started',
  )
  options.onReady?.(gateway)
  ready = gateway
  if (hupBeforeReady) onHup()
  const signal = await new Promise<string>((resolve) => {
    const stop = (name: string) => {
      // Removing the handlers gives a second SIGTERM/SIGINT its default action: exit at once.
      process.off('SIGTERM', onTerm)
      process.off('SIGINT', onInt)
      resolve(name)
    }
    const onTerm = () => stop('SIGTERM')
    const onInt = () => stop('SIGINT')
    process.once('SIGTERM', onTerm)
    process.once('SIGINT', onInt)
  })
  const graceMs = gateway.config.global.gracePeriodMs
  logger.info({ signal, gracePeriodMs: graceMs }, 'draining and stopping')
  await gateway.stop(graceMs)
  valve.stop()
  process.off('SIGHUP', onHup)
  logger.info('stopped')
  await new Promise<void>((resolve) => logger.flush(() => resolve()))
  return EXIT.ok
}

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string
  }
  return pkg.version
}
