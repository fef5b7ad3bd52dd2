/** Address lists (single addresses or CIDR ranges) over node:net's BlockList. */
import { BlockList, isIP, isIPv4 } from 'node:net'

export interface IpMatcher {
  readonly empty: boolean
  has(address: string): boolean
}

export function createIpMatcher(entries: readonly string[]): IpMatcher {
  const list = new BlockList()
  for (const entry of entries) {
    const [address, bits] = entry.split('/')
    const family = isIPv4(address) ? 'ipv4' : 'ipv6'
    if (bits === undefined) list.addAddress(address, family)
    else list.addSubnet(address, Number(bits), family)
  }
  return {
    empty: entries.length === 0,
    has(address) {
      if (entries.length === 0 || address === '') return false
      const plain = unmapIpv4(address)
      return list.check(plain, isIPv4(plain) ? 'ipv4' : 'ipv6')
    },
  }
}

/** `10.0.0.1`, `10.0.0.0/8`, `2001:db8::/32`: what createIpMatcher takes. */
export function isIpOrCidr(text: string): boolean {
  const [address, bits, extra] = text.split('/')
  const family = isIP(address)
  if (family === 0 || extra !== undefined) return false
  return bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128))
}

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) -> `10.0.0.1`. */
export function unmapIpv4(address: string): string {
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address
}
