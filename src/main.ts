/**
 * CLI entry only: flags, load config, start, signals. Exit codes:
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
import { Gateway } from './gateway.ts'
import { builtinPlugins } from './plugins/index.ts'

export const EXIT = { ok: 0, config: 1, usage: 2, start: 3 } as const

const HELP = `gatehouse: reverse proxy, load balancer and API gateway

Usage:
  gatehouse start -c FILE      serve with the config in FILE (YAML or JSON)
  gatehouse validate -c FILE   check FILE and print every problem
  gatehouse demo               start three demo services and a gateway in front
  gatehouse --version
  gatehouse --help

Signals (start): SIGHUP reloads the config; SIGTERM or SIGINT drains and exits.
The config file is also watched and reloaded when it changes.

Exit codes: 0 ok, 1 invalid config, 2 usage error, 3 could not start, 4 Node.js too old.
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
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(HELP)
    return command === undefined && !values.help ? EXIT.usage : EXIT.ok
  }
  if (command === 'demo') return runDemo(env)
  if (command !== 'start' && command !== 'validate') {
    process.stderr.write(`gatehouse: unknown command ${JSON.stringify(command)}\n\n${HELP}`)
    return EXIT.usage
  }
  const file = values.config
  if (file === undefined) {
    process.stderr.write(`gatehouse ${command}: give the config file with -c FILE\n`)
    return EXIT.usage
  }
  if (command === 'validate') return validate(file, env)
  return start(file, env)
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
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

/** Starts a gateway and runs until SIGTERM/SIGINT; also used by the demo. */
export async function serve(file: string, env: Env, onReady?: (gateway: Gateway) => void): Promise<number> {
  const logger = pino({ base: null, level: env.GATEHOUSE_LOG_LEVEL ?? 'info' }, pino.destination(2))
  let gateway: Gateway
  try {
    gateway = await Gateway.start({ configFile: file, env, logger })
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`)
      return EXIT.config
    }
    logger.error({ err: error }, `could not start: ${(error as Error).message}`)
    return EXIT.start
  }
  gateway.watch()
  logger.info({ listeners: gateway.ports(), version: version() }, 'gatehouse started')
  onReady?.(gateway)
  const onHup = () => void gateway.reload()
  process.on('SIGHUP', onHup)
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'draining and stopping')
      process.off('SIGTERM', onTerm)
      process.off('SIGINT', onInt)
      resolve()
    }
    const onTerm = () => stop('SIGTERM')
    const onInt = () => stop('SIGINT')
    process.once('SIGTERM', onTerm)
    process.once('SIGINT', onInt)
  })
  process.off('SIGHUP', onHup)
  await gateway.stop()
  logger.info('stopped')
  await new Promise<void>((resolve) => logger.flush(() => resolve()))
  return EXIT.ok
}

function start(file: string, env: Env): Promise<number> {
  return serve(file, env)
}

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string
  }
  return pkg.version
}
