/**
 * `node bench/distribution.ts`: the balancer figures in docs/load-balancing.md,
 * computed with the same helpers the contract suite asserts with
 * (src/upstreams/balancers/measure.ts). No network: balancers are pure
 * functions of their targets' state.
 *
 * 1. Idle spread: 30,000 picks over weights 3:2:1 (distinct keys for hash balancers).
 * 2. Remapped share: consistent-hash and ip-hash over 100,000 keys, 5 -> 6 and 6 -> 5 targets.
 * 3. Under load (simulated): 32 requests always in flight, 30,000 in all, three targets
 *    of equal weight, one five times slower; each target answers in
 *    base x max(1, (in flight) / 4) ms. Shows who avoids the slow target.
 */
import type { Balancer } from '../src/upstreams/balancer.ts'
import { consistentHash } from '../src/upstreams/balancers/consistent-hash.ts'
import { ewma } from '../src/upstreams/balancers/ewma.ts'
import { ipHash } from '../src/upstreams/balancers/ip-hash.ts'
import { leastConnections } from '../src/upstreams/balancers/least-connections.ts'
import {
  closeTargets,
  KEY_HEADER,
  keyedRequest,
  makeTargets,
  remap,
  shares,
  tally,
} from '../src/upstreams/balancers/measure.ts'
import { random } from '../src/upstreams/balancers/random.ts'
import { roundRobin } from '../src/upstreams/balancers/round-robin.ts'
import { updateLatency } from '../src/upstreams/latency.ts'
import type { Target } from '../src/upstreams/target.ts'

const algorithms: readonly {
  name: string
  make: (targets: readonly Target[]) => Balancer
  keyed: boolean
}[] = [
  { name: 'round-robin', make: roundRobin, keyed: false },
  { name: 'least-connections', make: leastConnections, keyed: false },
  { name: 'random (p2c)', make: random, keyed: false },
  { name: 'ewma', make: ewma, keyed: false },
  { name: 'ip-hash', make: ipHash, keyed: true },
  {
    name: 'consistent-hash',
    make: (targets) => consistentHash(targets, { from: 'header', name: KEY_HEADER }),
    keyed: true,
  },
]

const percent = (share: number) => `${(share * 100).toFixed(2)}%`
const all: Target[] = []
function targets(weights: readonly number[], names?: readonly string[]): Target[] {
  const list = makeTargets(weights, names)
  all.push(...list)
  return list
}

function idleSpread(): void {
  const PICKS = 30_000
  console.log(`## Idle spread: ${PICKS} picks, weights 3:2:1 (expected 50.00% / 33.33% / 16.67%)\n`)
  console.log('| algorithm | a (3) | b (2) | c (1) | largest deviation |')
  console.log('| --- | --- | --- | --- | --- |')
  for (const algorithm of algorithms) {
    const list = targets([3, 2, 1])
    const got = shares(tally(algorithm.make(list), PICKS, { keyed: algorithm.keyed }), list)
    const deviation = Math.max(Math.abs(got.a - 3 / 6), Math.abs(got.b - 2 / 6), Math.abs(got.c - 1 / 6))
    console.log(
      `| ${algorithm.name} | ${percent(got.a)} | ${percent(got.b)} | ${percent(got.c)} | ${(deviation * 100).toFixed(2)} pt |`,
    )
  }
  console.log()
}

function remapped(): void {
  const KEYS = 100_000
  console.log(`## Remapped share: ${KEYS} keys, one target added or removed (ideal 1/6 = 16.67%)\n`)
  console.log('| algorithm | 5 -> 6 moved | needlessly moved | 6 -> 5 moved | needlessly moved |')
  console.log('| --- | --- | --- | --- | --- |')
  for (const algorithm of algorithms.filter((a) => a.keyed)) {
    const six = targets([1, 1, 1, 1, 1, 1], ['r1', 'r2', 'r3', 'r4', 'r5', 'r6'])
    const five = six.slice(0, 5)
    const a = { balancer: algorithm.make(five), targets: five }
    const b = { balancer: algorithm.make(six), targets: six }
    const grow = remap(a, b, KEYS)
    const shrink = remap(b, a, KEYS)
    console.log(
      `| ${algorithm.name} | ${percent(grow.moved / KEYS)} | ${grow.movedNeedlessly} | ${percent(shrink.moved / KEYS)} | ${shrink.movedNeedlessly} |`,
    )
  }
  console.log()
}

/** A closed loop: every completion sends the next request at once. Latencies feed the ewma estimate. */
function underLoad(): void {
  const REQUESTS = 30_000
  const CONCURRENCY = 32
  const BASE_MS = [1, 1, 5]
  console.log(
    `## Under load (simulated): ${REQUESTS} requests, ${CONCURRENCY} in flight, weights 1:1:1, c is 5x slower\n`,
  )
  console.log('| algorithm | a | b | c (slow) | mean latency |')
  console.log('| --- | --- | --- | --- | --- |')
  for (const algorithm of algorithms) {
    const list = targets([1, 1, 1])
    const balancer = algorithm.make(list)
    // Simulated time on the balancers' clock, so the ewma decay sees sensible intervals.
    const start = performance.now()
    const finishAt = new Float64Array(CONCURRENCY)
    const owner: (Target | null)[] = new Array(CONCURRENCY).fill(null)
    const sentAt = new Float64Array(CONCURRENCY)
    const counts = new Map<Target, number>()
    let latencyTotal = 0
    let sent = 0
    let clock = start
    const send = (slot: number) => {
      const target = balancer.pick(keyedRequest(sent))!
      sent++
      const index = list.indexOf(target)
      const latency = BASE_MS[index] * Math.max(1, (target.state.inflight + 1) / 4)
      target.state.inflight++
      counts.set(target, (counts.get(target) ?? 0) + 1)
      owner[slot] = target
      sentAt[slot] = clock
      finishAt[slot] = clock + latency
    }
    for (let slot = 0; slot < CONCURRENCY; slot++) send(slot)
    let done = 0
    while (done < REQUESTS) {
      let slot = 0
      for (let i = 1; i < CONCURRENCY; i++) if (finishAt[i] < finishAt[slot]) slot = i
      clock = finishAt[slot]
      const target = owner[slot]!
      target.state.inflight--
      updateLatency(target.state, clock - sentAt[slot], clock)
      latencyTotal += clock - sentAt[slot]
      done++
      if (sent < REQUESTS) send(slot)
      else finishAt[slot] = Number.POSITIVE_INFINITY
    }
    const share = (t: Target) => percent((counts.get(t) ?? 0) / sent)
    console.log(
      `| ${algorithm.name} | ${share(list[0])} | ${share(list[1])} | ${share(list[2])} | ${(latencyTotal / done).toFixed(2)} ms |`,
    )
  }
  console.log()
}

idleSpread()
remapped()
underLoad()
await closeTargets(all)
