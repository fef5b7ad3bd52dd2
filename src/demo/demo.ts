/** `gatehouse demo` (npm start): demo services + a gateway from examples/demo/gatehouse.yaml. */
import { fileURLToPath } from 'node:url'
import type { Env } from '../config/load.ts'
import { demoEnv, startDemoServices } from './services.ts'

export const DEMO_CONFIG = fileURLToPath(new URL('../../examples/demo/gatehouse.yaml', import.meta.url))

export async function runDemo(env: Env): Promise<number> {
  const { serve } = await import('../main.ts')
  const services = await startDemoServices()
  try {
    return await serve(DEMO_CONFIG, { ...env, ...demoEnv(services) }, (gateway) => {
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
    })
  } finally {
    await Promise.all(Object.values(services).map((s) => s.close()))
  }
}
