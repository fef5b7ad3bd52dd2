/**
 * A small authoritative DNS responder over UDP on 127.0.0.1 port 0, for
 * discovery tests (RFC 1035 §4 message format; SRV per RFC 2782, AAAA per
 * RFC 3596). It answers A, AAAA and SRV questions from a table the test can
 * change at any time: a name missing from the table is NXDOMAIN, a name
 * without records of the asked type is an empty answer (NODATA). `failing`
 * answers SERVFAIL to everything, to test "keep the last good list".
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram'
import type { AddressInfo } from 'node:net'

export interface SrvRecord {
  priority: number
  weight: number
  port: number
  target: string
}

export interface DnsRecords {
  A?: string[]
  AAAA?: string[]
  SRV?: SrvRecord[]
  /** TTL of every record of this name, in seconds. Default 1. */
  ttl?: number
}

export interface DnsServer {
  /** 127.0.0.1:PORT, for `servers`. */
  readonly address: string
  /** Records by name (lowercase, no trailing dot); change it freely. */
  readonly records: Map<string, DnsRecords>
  /** Questions answered, by "name TYPE". */
  readonly queries: Map<string, number>
  /** Answer SERVFAIL to every question while true. */
  failing: boolean
  close(): Promise<void>
}

const TYPE = { A: 1, AAAA: 28, SRV: 33 } as const
const TYPE_NAME = new Map<number, string>(Object.entries(TYPE).map(([name, code]) => [code, name]))
const RCODE_SERVFAIL = 2
const RCODE_NXDOMAIN = 3

export async function startDnsServer(records: Record<string, DnsRecords> = {}): Promise<DnsServer> {
  const socket = createSocket('udp4')
  const server: DnsServer = {
    address: '',
    records: new Map(Object.entries(records)),
    queries: new Map(),
    failing: false,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  }
  socket.on('message', (message, remote) => answer(socket, server, message, remote))
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  const { port } = socket.address() as AddressInfo
  ;(server as { address: string }).address = `127.0.0.1:${port}`
  return server
}

function answer(socket: Socket, server: DnsServer, message: Buffer, remote: RemoteInfo): void {
  if (message.length < 12) return
  let offset = 12
  const labels: string[] = []
  while (offset < message.length && message[offset] !== 0) {
    const length = message[offset]
    labels.push(message.subarray(offset + 1, offset + 1 + length).toString('latin1'))
    offset += length + 1
  }
  offset += 1
  const questionEnd = offset + 4
  if (questionEnd > message.length) return
  const type = message.readUInt16BE(offset)
  const name = labels.join('.').toLowerCase()
  const typeName = TYPE_NAME.get(type) ?? String(type)
  const key = `${name} ${typeName}`
  server.queries.set(key, (server.queries.get(key) ?? 0) + 1)

  const entry = server.records.get(name)
  const rdatas: Buffer[] = []
  let rcode = 0
  if (server.failing) rcode = RCODE_SERVFAIL
  else if (!entry) rcode = RCODE_NXDOMAIN
  else if (type === TYPE.A) for (const a of entry.A ?? []) rdatas.push(ipv4(a))
  else if (type === TYPE.AAAA) for (const a of entry.AAAA ?? []) rdatas.push(ipv6(a))
  else if (type === TYPE.SRV) for (const srv of entry.SRV ?? []) rdatas.push(srvData(srv))

  const header = Buffer.alloc(12)
  message.copy(header, 0, 0, 2) // id
  const rd = message[2] & 0x01
  header[2] = 0x80 | 0x04 | rd // QR, AA, RD copied
  header[3] = 0x80 | rcode // RA
  header.writeUInt16BE(1, 4) // one question
  header.writeUInt16BE(rdatas.length, 6)
  const ttl = entry?.ttl ?? 1
  const answers = rdatas.map((rdata) => {
    const head = Buffer.alloc(12)
    head.writeUInt16BE(0xc00c, 0) // pointer to the question's name
    head.writeUInt16BE(type, 2)
    head.writeUInt16BE(1, 4) // class IN
    head.writeUInt32BE(ttl, 6)
    head.writeUInt16BE(rdata.length, 10)
    return Buffer.concat([head, rdata])
  })
  const reply = Buffer.concat([header, message.subarray(12, questionEnd), ...answers])
  socket.send(reply, remote.port, remote.address)
}

function ipv4(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number))
}

function ipv6(address: string): Buffer {
  const [head, tail = ''] = address.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === '' ? [] : tail.split(':')
  const groups = address.includes('::')
    ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
    : left
  const out = Buffer.alloc(16)
  groups.forEach((group, i) => {
    out.writeUInt16BE(Number.parseInt(group, 16), i * 2)
  })
  return out
}

function srvData(srv: SrvRecord): Buffer {
  const fixed = Buffer.alloc(6)
  fixed.writeUInt16BE(srv.priority, 0)
  fixed.writeUInt16BE(srv.weight, 2)
  fixed.writeUInt16BE(srv.port, 4)
  // RFC 2782: the target name is not compressed.
  const labels = srv.target.split('.').filter((l) => l !== '')
  const name = Buffer.concat([
    ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])),
    Buffer.from([0]),
  ])
  return Buffer.concat([fixed, name])
}
