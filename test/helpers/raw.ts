/** Raw TCP requests, for what an HTTP client would refuse to send (smuggling, bad framing). */
import { connect, type Socket } from 'node:net'

export interface RawResult {
  /** Everything the server sent. */
  text: string
  /** True when the server closed the connection (rather than our timeout). */
  closed: boolean
}

export function rawRequest(port: number, payload: string | Buffer, timeoutMs = 3000): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed: false })
    }, timeoutMs)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', (error) => {
      if ((error as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(error)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed: true })
    })
    socket.write(payload)
  })
}

/** A raw connection kept open, for exchanges in steps (slow heads, 100-continue, idle keep-alive). */
export interface RawConnection {
  readonly socket: Socket
  /** Everything the server sent so far. */
  text(): string
  /** True once the server closed (or reset) the connection. */
  closed(): boolean
  /** Resolves when the connection is closed, whoever closed it. */
  readonly done: Promise<void>
  write(data: string | Buffer): void
  destroy(): void
}

export async function openRaw(port: number): Promise<RawConnection> {
  const socket = connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  let isClosed = false
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  // A reset is a way of closing too; tests look at closed() and text().
  socket.on('error', () => {})
  const done = new Promise<void>((resolve) =>
    socket.once('close', () => {
      isClosed = true
      resolve()
    }),
  )
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  return {
    socket,
    text: () => Buffer.concat(chunks).toString('latin1'),
    closed: () => isClosed,
    done,
    write: (data) => {
      if (!socket.destroyed) socket.write(data)
    },
    destroy: () => socket.destroy(),
  }
}

export function statusOf(text: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
}

/** The body of the first response in `text` (after its head), for problem+json checks. */
export function bodyOf(text: string): string {
  const end = text.indexOf('\r\n\r\n')
  return end === -1 ? '' : text.slice(end + 4)
}
