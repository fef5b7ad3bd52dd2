/**
 * `npm start` as a newcomer meets it: `gatehouse demo` prints a URL and three
 * curl commands; each must work exactly as printed, and Ctrl-C (SIGINT) must
 * stop the gateway and the demo services and exit 0.
 */
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { type CliRun, killCli, runCli } from '../helpers/cli.ts'
import { eventually } from '../helpers/eventually.ts'

const exec = promisify(execFile)

function hasCurl(): boolean {
  try {
    execFileSync('curl', ['--version'])
    return true
  } catch {
    return false
  }
}

/** `curl -i` output -> status, lower-cased headers, body. */
function parseCurl(output: string) {
  const split = output.indexOf('\r\n\r\n')
  const [statusLine, ...lines] = output.slice(0, split).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: JSON.parse(output.slice(split + 4)) }
}

function connectResult(url: string): Promise<string> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname)
    socket.once('connect', () => {
      socket.destroy()
      resolve('connected')
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
  })
}

describe('gatehouse demo (npm start)', { skip: hasCurl() ? false : 'curl is not installed' }, () => {
  let demo: CliRun | undefined
  let commands: string[]
  let urls: string[]
  before(async () => {
    demo = runCli(['demo'], { env: { GATEHOUSE_PORT: '0' } })
    await eventually(() => demo!.stdout().includes('Ctrl-C stops everything.'), { timeout: 15_000 })
    const banner = demo.stdout()
    commands = banner
      .split('\n')
      .filter((line) => line.startsWith('  curl '))
      .map((line) => line.trim())
    urls = [...new Set(banner.match(/http:\/\/127\.0\.0\.1:\d+/g))]
  })
  after(() => killCli(demo))

  it('prints a gateway URL on a free port and three curl commands', () => {
    const gateway = /a gateway on (http:\/\/127\.0\.0\.1:(\d+))/.exec(demo!.stdout())
    assert.ok(gateway, demo!.stdout())
    assert.notEqual(Number(gateway[2]), 0)
    assert.equal(commands.length, 3)
    for (const command of commands) assert.ok(command.includes(gateway[1]), command)
    // The gateway and four services (users twice, orders, payments).
    assert.equal(urls.length, 5)
  })

  it('answers the printed commands, run as printed with curl', async () => {
    const run = async (command: string) => parseCurl((await exec('sh', ['-c', command])).stdout)

    const users = [await run(commands[0]), await run(commands[0])]
    for (const answer of users) {
      assert.equal(answer.status, 200)
      assert.equal(answer.body.service, 'users')
      assert.deepEqual(
        answer.body.users.map((u: { name: string }) => u.name),
        ['Ada Lovelace', 'Alan Turing'],
      )
    }
    // Two copies behind one route, taken in turn.
    assert.deepEqual(users.map((u) => u.body.copy).sort(), ['users-1', 'users-2'])

    const order = await run(commands[1])
    assert.equal(order.status, 200)
    assert.deepEqual(order.body, { service: 'orders', order: { id: 101, userId: 1, total: 42.5 } })
    assert.equal(order.headers['x-frame-options'], 'DENY', 'the security-headers plugin on /orders')
    assert.ok(order.headers['x-request-id'])

    const payment = await run(commands[2])
    assert.equal(payment.status, 201)
    assert.equal(payment.body.service, 'payments')
    assert.equal(payment.body.amount, 12.5)
    assert.equal(payment.body.status, 'accepted')
  })

  it('stops the gateway and every demo service on Ctrl-C (SIGINT) and exits 0', async () => {
    demo!.signal('SIGINT')
    assert.deepEqual(await demo!.exited, { code: 0, signal: null })
    assert.match(demo!.stdout(), /Demo stopped: the gateway and 4 services are closed\./)
    assert.doesNotMatch(demo!.stderr(), /exiting anyway/)
    for (const url of urls) assert.equal(await connectResult(url), 'ECONNREFUSED', url)
    // The access log (stdout in the demo) was flushed before exit: one line per request above.
    const accessLines = demo!
      .stdout()
      .split('\n')
      .filter((line) => line.startsWith('{') && line.includes('"reqId"'))
    assert.equal(accessLines.length, 4)
  })
})
