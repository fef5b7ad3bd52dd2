/** The balancer a service's config names, one file per algorithm. */
import type { ServiceConfig } from '../../config/types.ts'
import type { Balancer } from '../balancer.ts'
import type { Target } from '../target.ts'
import { consistentHash } from './consistent-hash.ts'
import { ewma } from './ewma.ts'
import { ipHash } from './ip-hash.ts'
import { leastConnections } from './least-connections.ts'
import { random } from './random.ts'
import { roundRobin } from './round-robin.ts'

export function createBalancer(targets: readonly Target[], service: ServiceConfig): Balancer {
  const balancer = service.balancer
  const slowStartMs = service.slowStartMs
  switch (balancer.algorithm) {
    case 'round-robin':
      return roundRobin(targets, slowStartMs)
    case 'least-connections':
      return leastConnections(targets, slowStartMs)
    case 'ip-hash':
      return ipHash(targets, slowStartMs)
    case 'consistent-hash':
      return consistentHash(targets, balancer.key, slowStartMs)
    case 'random':
      return random(targets, slowStartMs)
    case 'ewma':
      return ewma(targets, slowStartMs)
  }
}
