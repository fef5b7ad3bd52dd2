/**
 * How many threads serve: `workers` from the config, `auto` meaning the
 * cores available to this process (os.availableParallelism() follows the
 * CPU affinity, so `taskset -c 0` gives 1). Several threads need the
 * platform to share a port between sockets (SO_REUSEPORT: Linux 3.9+,
 * FreeBSD 12+, DragonFly, Solaris 11.4, AIX 7.2.5); where it cannot, Gatehouse
 * serves on one thread and says so in the log.
 */
import { createServer } from 'node:net'
import { availableParallelism } from 'node:os'
import type { Logger } from 'pino'

export interface WorkerCountOptions {
  logger: Logger
  /** Plugins registered in code exist on this thread only: worker threads could not run them. */
  customPlugins: boolean
  /** The platform check (tests stand in for a platform without SO_REUSEPORT). */
  reusePortProblem?: () => Promise<string | null>
}

export async function workerCount(setting: number | 'auto', options: WorkerCountOptions): Promise<number> {
  const wanted = setting === 'auto' ? availableParallelism() : setting
  if (wanted <= 1) return 1
  if (options.customPlugins) {
    options.logger.warn(
      { workers: wanted },
      'plugins registered in code run on this thread only: serving on one thread instead of worker threads',
    )
    return 1
  }
  const unsupported = await (options.reusePortProblem ?? reusePortProblem)()
  if (unsupported !== null) {
    options.logger.warn(
      { workers: wanted, reason: unsupported },
      'this platform cannot share a port between threads (SO_REUSEPORT): serving on one thread',
    )
    return 1
  }
  return wanted
}

/** Binds two sockets to one loopback port with reusePort; null when the platform allows it, else why not. */
export async function reusePortProblem(): Promise<string | null> {
  const first = createServer()
  const second = createServer()
  const listen = (server: ReturnType<typeof createServer>, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      try {
        server.listen({ host: '127.0.0.1', port, reusePort: true }, () => {
          const address = server.address()
          resolve(typeof address === 'object' && address !== null ? address.port : port)
        })
      } catch (error) {
        reject(error)
      }
    })
  try {
    const port = await listen(first, 0)
    await listen(second, port)
    return null
  } catch (error) {
    return (error as Error).message
  } finally {
    first.close()
    second.close()
  }
}
