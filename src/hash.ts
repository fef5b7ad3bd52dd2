/**
 * 32-bit hashing shared by the consistent-hash ring (upstreams/balancers/ring.ts)
 * and the memory store (stores/memory.ts): FNV-1a steps, then murmur3's
 * finalizer, since FNV-1a alone leaves the low bits poorly mixed.
 */
export const FNV_OFFSET = 0x811c9dc5
export const FNV_PRIME = 0x01000193

/** Murmur3's 32-bit finalizer (fmix32): every input bit affects every output bit. */
export function fmix32(value: number): number {
  let h = value
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
