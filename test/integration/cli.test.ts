import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { BIN, killCli, ROOT, runCli, startCli } from '../helpers/cli.ts'

async function run(args: string[], options: { node?: string } = {}) {
  const cli = runCli(args, options)
  const { code } = await cli.exited
  return { code, stdout: cli.stdout(), stderr: cli.stderr() }
}

/** Every `node` on PATH (and the usual places) whose major version is 20, or null. */
function findNode20(): string | null {
  let candidates: string[] = []
  try {
    candidates = execFileSync('which', ['-a', 'node'], { encoding: 'utf8' }).split('\n').filter(Boolean)
  } catch {}
  candidates.push('/usr/local/bin/node', '/usr/bin/node')
  for (const candidate of candidates) {
    try {
      const version = execFileSync(candidate, ['--version'], { encoding: 'utf8' }).trim()
      if (version.startsWith('v20.')) return candidate
    } catch {}
  }
  return null
}

describe('gatehouse CLI', () => {
  let dir: string
  let pkg: { version: string; engines: { node: string } }
  const valid = `
listeners:
  - port: 0
    host: 127.0.0.1
routes:
  - path: /
    respond: { body: hello }
accessLog: off
`
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gatehouse-cli-'))
    pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8'))
  })
  after(() => rm(dir, { recursive: true, force: true }))

  it('--version prints the version in package.json', async () => {
    for (const flag of ['--version', '-v']) {
      const result = await run([flag])
      assert.equal(result.code, 0)
      assert.equal(result.stdout, `${pkg.version}\n`)
    }
  })

  it('--help prints usage, signals and every exit code', async () => {
    const result = await run(['--help'])
    assert.equal(result.code, 0)
    assert.match(result.stdout, /Usage:\n {2}gatehouse start -c FILE/)
    assert.match(result.stdout, /SIGHUP/)
    for (const code of [
      '0  ok',
      '1  the configuration has problems',
      '2  usage error',
      '3  could not start',
      '4  Node.js too old',
    ])
      assert.ok(result.stdout.includes(code), `help lists exit code "${code}"`)
  })

  it('exits 2 on usage errors', async () => {
    const unknown = await run(['frobnicate'])
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /unknown command "frobnicate"/)
    assert.match(unknown.stderr, /Usage:/)

    const flag = await run(['start', '--frobnicate'])
    assert.equal(flag.code, 2)
    assert.match(flag.stderr, /--frobnicate/)

    const noFile = await run(['start'])
    assert.equal(noFile.code, 2)
    assert.match(noFile.stderr, /-c FILE/)

    const nothing = await run([])
    assert.equal(nothing.code, 2)
    assert.equal(nothing.stdout, '')
  })

  it('validate exits 0 on a valid file and 1 listing the problems of an invalid one', async () => {
    const good = join(dir, 'good.yaml')
    await writeFile(good, valid)
    const ok = await run(['validate', '-c', good])
    assert.equal(ok.code, 0)
    assert.match(ok.stdout, /good\.yaml: ok \(1 listener\(s\), 0 service\(s\), 1 route\(s\)\)/)

    const bad = join(dir, 'bad.yaml')
    await writeFile(bad, `${valid}\nroutes:\n  - path: /x\n    service: missing\n`)
    const refused = await run(['validate', '-c', bad])
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /bad\.yaml:\d+:\d+/)
  })

  it('start exits 1 with every problem on stderr when the config is invalid', async () => {
    const bad = join(dir, 'invalid.yaml')
    await writeFile(
      bad,
      `listeners:\n  - port: 0\n    hots: 127.0.0.1\nroutes:\n  - path: /a\n    service: nowhere\n`,
    )
    const result = await run(['start', '-c', bad])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /problems? in configuration/)
    assert.match(result.stderr, new RegExp(`${bad.replaceAll('.', '\\.')}:\\d+:\\d+ `))
    assert.doesNotMatch(result.stderr, /gatehouse started/)

    const missing = await run(['start', '-c', join(dir, 'no-such-file.yaml')])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /no-such-file\.yaml:1:1 .*cannot read file \(ENOENT\)/)
  })

  describe('a port in use', () => {
    let blocker: Server
    before(async () => {
      blocker = createServer()
      await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    })
    after(() => new Promise((resolve) => blocker.close(resolve)))

    it('start exits 3 and says which address is taken', async () => {
      const port = (blocker.address() as { port: number }).port
      const file = join(dir, 'taken.yaml')
      await writeFile(file, valid.replace('port: 0', `port: ${port}`))
      const result = await run(['start', '-c', file])
      assert.equal(result.code, 3)
      assert.equal(
        result.stderr,
        `gatehouse: could not start: 127.0.0.1:${port} is already in use (another process is listening there)\n`,
      )
    })
  })

  it('start serves until SIGTERM and exits 0', async () => {
    const file = join(dir, 'serve.yaml')
    await writeFile(file, valid)
    const cli = await startCli(file)
    try {
      const res = await request(`http://127.0.0.1:${cli.port()}/`)
      assert.equal(await res.body.text(), 'hello')
      const started = cli.logs().find((l) => l.msg === 'gatehouse started')!
      assert.equal(started.version, pkg.version)
      assert.equal(typeof started.time, 'string', 'ISO timestamps')
      cli.signal('SIGTERM')
      assert.deepEqual(await cli.exited, { code: 0, signal: null })
    } finally {
      await killCli(cli)
    }
  })

  describe('memory tuning at start (docs/performance.md)', () => {
    /** The running process's command line and MALLOC_ARENA_MAX, read from /proc. */
    const processFacts = async (pid: number) => {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
      const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0')
      return { cmdline, arenas: environ.find((v) => v.startsWith('MALLOC_ARENA_MAX='))?.split('=')[1] }
    }

    it('start runs Node with a capped young generation and one malloc arena per core, in the same process', {
      skip: process.platform !== 'linux',
    }, async () => {
      const file = join(dir, 'tuned.yaml')
      await writeFile(file, valid)
      const cli = await startCli(file, { env: { MALLOC_ARENA_MAX: '' } })
      try {
        const started = cli.logs().find((l) => l.msg === 'gatehouse started')!
        assert.equal(started.pid, cli.child.pid, 'process.execve keeps the PID signals are sent to')
        const facts = await processFacts(cli.child.pid!)
        assert.ok(facts.cmdline.includes('--max-semi-space-size=4'), facts.cmdline.join(' '))
        assert.equal(facts.arenas, String(availableParallelism()))
        cli.signal('SIGTERM')
        assert.deepEqual(await cli.exited, { code: 0, signal: null })
      } finally {
        await killCli(cli)
      }
    })

    it("keeps the operator's own settings, and GATEHOUSE_NODE_TUNING=off keeps Node's defaults", {
      skip: process.platform !== 'linux',
    }, async () => {
      const file = join(dir, 'untuned.yaml')
      await writeFile(file, valid)
      const own = await startCli(file, {
        env: { MALLOC_ARENA_MAX: '3', NODE_OPTIONS: '--max-semi-space-size=8' },
      })
      const off = await startCli(file, { env: { GATEHOUSE_NODE_TUNING: 'off', MALLOC_ARENA_MAX: '' } })
      try {
        const mine = await processFacts(own.child.pid!)
        assert.ok(!mine.cmdline.includes('--max-semi-space-size=4'), mine.cmdline.join(' '))
        assert.equal(mine.arenas, '3')
        const defaults = await processFacts(off.child.pid!)
        assert.ok(
          !defaults.cmdline.some((arg) => arg.startsWith('--max-semi-space-size')),
          defaults.cmdline.join(' '),
        )
        assert.equal(defaults.arenas, '')
      } finally {
        await killCli(own)
        await killCli(off)
      }
    })
  })

  it('bin/gatehouse.js asks for the Node.js major version that package.json engines names', async () => {
    const bin = await readFile(BIN, 'utf8')
    const minimum = /const MIN_MAJOR = (\d+)/.exec(bin)?.[1]
    assert.equal(pkg.engines.node, `>=${minimum}`)
  })

  const node20 = findNode20()
  it('exits 4 with a clear message on Node.js 20', {
    skip: node20 === null ? 'no Node.js 20 on this machine (which -a node)' : false,
  }, async () => {
    const result = await run(['--version'], { node: node20! })
    assert.equal(result.code, 4)
    assert.match(
      result.stderr,
      /^gatehouse: Node\.js 20\.\d+\.\d+ is too old\. Gatehouse needs Node\.js 24 or newer/,
    )
    assert.match(result.stderr, /Node\.js 26/)
    assert.equal(result.stdout, '')
  })
})
