/** `gatehouse demo` (npm start): demo services + a gateway from examples/demo/gatehouse.yaml. */
import { fileURLToPath } from 'node:url'
import type { Env } from '../config/load.ts'
import type { Gateway } from '../gateway.ts'
import { type DemoService, demoEnv, startDemoServices } from './services.ts'

export const DEMO_CONFIG = fileURLToPath(new URL('../../examples/demo/gatehouse.yaml', import.meta.url))

/** Runs until SIGINT/SIGTERM (Ctrl-C), then stops the gateway and the services; returns the exit code. */
export async function runDemo(env: Env): Promise<number> {
  // main.ts imports this module; importing it back at call time keeps the cycle out of module loading.
  const { EXIT, serve } = await import('../main.ts')
  const services = await startDemoServices()
  let code: number
  try {
    code = await serve(
      DEMO_CONFIG,
      { ...env, ...demoEnv(services) },
      { onReady: (gw) => banner(gw, services) },
    )
  } finally {
    await Promise.all(Object.values(services).map((s) => s.close()))
  }
  if (code === EXIT.start)
    process.stderr.write(
      'gatehouse demo: pick another port for the gateway, e.g. GATEHOUSE_PORT=8081 npm start\n',
    )
  else
    process.stdout.write(
      `Demo stopped: the gateway and ${Object.keys(services).length} services are closed.\n`,
    )
  return code
}

function banner(gateway: Gateway, services: Record<string, DemoService>): void {
  const port = Object.values(gateway.ports())[0]
  const base = `http://127.0.0.1:${port}`
  process.stdout.write(
    [
      '',
      `Gatehouse demo: a gateway on ${base} in front of three services`,
      `  users     ${services.users1.url} and ${services.users2.url} (two copies, round robin)`,
      `  orders    ${services.orders.url}`,
      `  payments  ${services.payments.url}`,
      `  config    ${DEMO_CONFIG}`,
      '',
      'Try:',
      `  curl -i ${base}/users`,
      `  curl -i ${base}/orders/101`,
      `  curl -i -X POST ${base}/payments -H 'content-type: application/json' -d '{"amount": 12.5}'`,
      '',
      'Ctrl-C stops everything.',
      '',
    ].join('\n'),
  )
}
