import assert from 'node:assert/strict'
import { availableParallelism } from 'node:os'
import { describe, it } from 'node:test'
import pino from 'pino'
import { reusePortProblem, workerCount } from './count.ts'

function capture() {
  const lines: { msg: string; reason?: string }[] = []
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) })
  return { logger, lines }
}

describe('workerCount', () => {
  it('auto follows the cores available to the process', async () => {
    const { logger } = capture()
    const expected = availableParallelism()
    assert.equal(await workerCount('auto', { logger, customPlugins: false }), expected)
  })

  it('a number is taken as it is where the platform shares ports', async () => {
    const { logger, lines } = capture()
    assert.equal(await workerCount(3, { logger, customPlugins: false }), 3)
    assert.equal(await workerCount(1, { logger, customPlugins: false }), 1)
    assert.equal(lines.length, 0)
  })

  it('falls back to one thread, and says why, where SO_REUSEPORT is missing', async () => {
    const { logger, lines } = capture()
    const count = await workerCount(4, {
      logger,
      customPlugins: false,
      reusePortProblem: async () => 'reusePort is not supported on this platform',
    })
    assert.equal(count, 1)
    assert.equal(lines.length, 1)
    assert.match(lines[0].msg, /cannot share a port between threads \(SO_REUSEPORT\): serving on one thread/)
    assert.equal(lines[0].reason, 'reusePort is not supported on this platform')
  })

  it('serves on one thread when plugins were registered in code', async () => {
    const { logger, lines } = capture()
    assert.equal(await workerCount(2, { logger, customPlugins: true }), 1)
    assert.match(lines[0].msg, /plugins registered in code/)
  })

  it('finds SO_REUSEPORT on Linux', { skip: process.platform !== 'linux' }, async () => {
    assert.equal(await reusePortProblem(), null)
  })
})
