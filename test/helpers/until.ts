/** Polling for a condition in tests: the one copy. */

export type Poll<T> = () => T | undefined | false | Promise<T | undefined | false>

/** Poll `fn` every `everyMs` until it returns something truthy (which is returned); throw after `ms`. */
export async function until<T>(what: string, fn: Poll<T>, ms = 20_000, everyMs = 50): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(r => setTimeout(r, everyMs))
  }
}
