/** Durations are written `250ms`, `30s`, `5m`, `1h`; sizes `512b`, `64kb`, `1mb`, `1gb` (powers of 1024). */
export const DURATION_PATTERN = '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$'
export const SIZE_PATTERN = '^[0-9]+(b|kb|mb|gb)$'

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }

/** Milliseconds in a duration string; throws on anything the schema would refuse. */
export function parseDuration(text: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/.exec(text)
  if (!match)
    throw new Error(
      `invalid duration ${JSON.stringify(text)}: expected a number and a unit, like 250ms, 30s, 5m`,
    )
  return Math.round(Number(match[1]) * DURATION_UNITS[match[2]])
}

/** Bytes in a size string or a plain integer of bytes. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value
  const match = /^([0-9]+)(b|kb|mb|gb)$/.exec(value)
  if (!match)
    throw new Error(`invalid size ${JSON.stringify(value)}: expected a number and a unit, like 64kb, 1mb`)
  return Number(match[1]) * SIZE_UNITS[match[2]]
}
