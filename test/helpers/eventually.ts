/** Polls `check` until it stops throwing (or returns true), instead of sleeping a guessed time. */
export async function eventually<T>(
  check: () => T | Promise<T>,
  { timeout = 5000, interval = 20 }: { timeout?: number; interval?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeout
  let lastError: unknown
  for (;;) {
    try {
      const result = await check()
      if (result !== false) return result
      lastError = new Error('condition returned false')
    } catch (error) {
      lastError = error
    }
    if (Date.now() > deadline) throw lastError
    await new Promise((resolve) => setTimeout(resolve, interval))
  }
}
