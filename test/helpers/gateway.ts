/** Starts a real Gateway from YAML text in a temp folder, on port 0, logs silenced. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino, { type Logger } from 'pino'
import type { Env } from '../../src/config/load.ts'
import { Gateway } from '../../src/gateway.ts'
import type { PluginDefinition } from '../../src/pipeline/plugin.ts'

export interface GatewayTestOptions {
  /** The plugin registry (default: the built-ins), e.g. with test-only plugins added. */
  plugins?: ReadonlyMap<string, PluginDefinition<never>>
  /** Default: silent. */
  logger?: Logger
}

export interface TestGateway {
  readonly gateway: Gateway
  readonly dir: string
  readonly file: string
  /** Port of the first listener, or of the one named. */
  port(name?: string): number
  /** http://127.0.0.1:PORT of the first listener, or of the one named. */
  url(name?: string): string
  /** Writes new YAML over the config file (reload with gateway.reload()). */
  write(yaml: string): Promise<void>
  stop(graceMs?: number): Promise<void>
}

export async function startGateway(
  yaml: string,
  env: Env = {},
  options: GatewayTestOptions = {},
): Promise<TestGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'gatehouse-test-'))
  const file = join(dir, 'gatehouse.yaml')
  // Tests serve on the main thread unless they ask for workers (the default, auto, would follow the cores).
  const withDefaults = (text: string) => {
    let out = /^accessLog:/m.test(text) ? text : `${text}\naccessLog: off\n`
    if (!/^workers:/m.test(out)) out = `${out}\nworkers: 1\n`
    return out
  }
  await writeFile(file, withDefaults(yaml))
  let gateway: Gateway
  try {
    gateway = await Gateway.start({
      configFile: file,
      env,
      logger: options.logger ?? pino({ level: 'silent' }),
      plugins: options.plugins,
    })
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
  const port = (name?: string) => {
    const ports = gateway.ports()
    return name === undefined ? Object.values(ports)[0] : ports[name]
  }
  return {
    gateway,
    dir,
    file,
    port,
    url: (name) => `http://127.0.0.1:${port(name)}`,
    write: (text) => writeFile(file, withDefaults(text)),
    stop: async (graceMs = 1000) => {
      await gateway.stop(graceMs)
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** The state view of one target (Gateway.upstreamStates()); fails the test when it is not there. */
export function targetState(gw: TestGateway, service: string, url: string) {
  const found = gw.gateway.upstreamStates()[service]?.find((t) => t.url === url)
  if (found === undefined) throw new Error(`no state for ${url} in ${service}`)
  return found
}
