/** Raw TCP requests, for what an HTTP client would refuse to send (smuggling, bad framing). */
import { connect } from 'node:net'

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
    socket.on('data', (chunk) => chunks.push(chunk))
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

export function statusOf(text: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
}
