/**
 * Undo list for a describe block: `track` registers a server or gateway to be
 * closed (or stopped) after the tests, `defer` any other step; `run` undoes
 * them in reverse order. Use as `after(() => cleanup.run())`.
 */
type Closable = { close(): Promise<void> } | { stop(): Promise<void> }

export interface Cleanup {
  track<T extends Closable>(thing: T): T
  defer(step: () => Promise<void>): void
  run(): Promise<void>
}

export function createCleanup(): Cleanup {
  const steps: (() => Promise<void>)[] = []
  return {
    track(thing) {
      steps.push(() => ('close' in thing ? thing.close() : thing.stop()))
      return thing
    },
    defer(step) {
      steps.push(step)
    },
    async run() {
      for (const step of steps.reverse()) await step()
      steps.length = 0
    },
  }
}
