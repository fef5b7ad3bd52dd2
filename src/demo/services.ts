/**
 * Three small demo services (users, orders, payments), each a real HTTP
 * server on loopback with a couple of JSON endpoints. `copy` tells the users
 * service's two copies apart, so balancing shows in the answers.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

type Handler = (path: string, method: string, body: string) => { status: number; body: unknown }

const USERS = [
  { id: 1, name: 'Ada Lovelace' },
  { id: 2, name: 'Alan Turing' },
]
const ORDERS = [
  { id: 101, userId: 1, total: 42.5 },
  { id: 102, userId: 2, total: 7 },
]

function usersService(copy: string): Handler {
  return (path) => {
    if (path === '/users') return { status: 200, body: { copy, users: USERS } }
    const user = USERS.find((u) => `/users/${u.id}` === path)
    return user ? { status: 200, body: { copy, user } } : { status: 404, body: { error: 'no such user' } }
  }
}

const ordersService: Handler = (path) => {
  if (path === '/orders') return { status: 200, body: { orders: ORDERS } }
  const order = ORDERS.find((o) => `/orders/${o.id}` === path)
  return order ? { status: 200, body: { order } } : { status: 404, body: { error: 'no such order' } }
}

const paymentsService: Handler = (path, method, body) => {
  if (path === '/payments' && method === 'POST') {
    let amount: unknown
    try {
      amount = (JSON.parse(body || '{}') as { amount?: unknown }).amount
    } catch {
      return { status: 400, body: { error: 'body must be JSON' } }
    }
    return { status: 201, body: { paymentId: `pay_${Date.now().toString(36)}`, amount, status: 'accepted' } }
  }
  if (path === '/payments/health') return { status: 200, body: { status: 'ok' } }
  return { status: 404, body: { error: 'not found' } }
}

export interface DemoService {
  readonly name: string
  readonly url: string
  close(): Promise<void>
}

async function serve(name: string, handler: Handler): Promise<DemoService> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0]
      const reply = handler(path, req.method ?? 'GET', Buffer.concat(chunks).toString())
      const text = JSON.stringify({ service: name, ...(reply.body as object) })
      res.writeHead(reply.status, { 'content-type': 'application/json', 'x-powered-by': 'demo' })
      res.end(text)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

export async function startDemoServices(): Promise<Record<string, DemoService>> {
  const [users1, users2, orders, payments] = await Promise.all([
    serve('users', usersService('users-1')),
    serve('users', usersService('users-2')),
    serve('orders', ordersService),
    serve('payments', paymentsService),
  ])
  return { users1, users2, orders, payments }
}

/** The environment the demo config reads its target URLs from. */
export function demoEnv(services: Record<string, DemoService>): Record<string, string> {
  return {
    USERS_URL_1: services.users1.url,
    USERS_URL_2: services.users2.url,
    ORDERS_URL: services.orders.url,
    PAYMENTS_URL: services.payments.url,
  }
}
