/**
 * Small async helpers shared by long-running processes (orchestrator, sync client, watchers): an
 * abortable sleep, an exponential backoff, calls retried with it, and a wait for an OS signal. No state beyond their arguments.
 */

/**
 * Resolve after `ms`, or as soon as `signal` aborts (never rejects). Returns true if the full time
 * passed, false if it was cut short by the signal.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false)
  return new Promise(resolve => {
    const done = (full: boolean) => {
      clearTimeout(timer)
      signal?.removeEventListener("abort", onAbort)
      resolve(full)
    }
    const onAbort = () => done(false)
    const timer = setTimeout(() => done(true), Math.max(0, ms))
    signal?.addEventListener("abort", onAbort, { once: true })
  })
}

export interface BackoffOptions {
  /** Delay of the first retry (attempt 0). Default 100 ms. */
  baseMs?: number
  /** Upper bound of any delay. Default 30 s. */
  maxMs?: number
  /** Growth per attempt. Default 2. */
  factor?: number
  /** Fraction of the delay replaced by randomness (0..1), so contenders spread out. Default 0.2. */
  jitter?: number
  /** Random source in [0, 1) (injectable for tests). Default Math.random. */
  random?: () => number
}

/** The delay before retry number `attempt` (0-based): base * factor^attempt, capped, with jitter. */
export function backoff(attempt: number, opts: BackoffOptions = {}): number {
  const { baseMs = 100, maxMs = 30_000, factor = 2, jitter = 0.2, random = Math.random } = opts
  const raw = Math.min(maxMs, baseMs * factor ** Math.max(0, attempt))
  const j = Math.min(1, Math.max(0, jitter))
  return Math.round(raw * (1 - j) + raw * j * random())
}

export interface RetryOptions extends BackoffOptions {
  /** Whether a failure is worth another try; any other failure is thrown as it is. */
  retryIf: (e: unknown) => boolean
  /** No try after this moment (ms since the epoch): the last failure is thrown (through `late` if given). */
  deadline?: number
  /** What a failure becomes when the deadline stops the tries. Default: the failure itself. */
  late?: (e: unknown) => unknown
  /** Stops the tries: the last failure is thrown. */
  signal?: AbortSignal
  /** Told before each wait. */
  onRetry?: (e: unknown, waitMs: number) => void
  /** Told when a try succeeds after failures. */
  onRecovered?: () => void
}

/**
 * Call `call` until it succeeds, waiting a backoff (see {@link backoff}; no jitter unless asked) between
 * tries while the failure is one `retryIf` accepts, the deadline has not passed and `signal` has not
 * aborted. The last wait is cut to the deadline, so a try is made at it.
 */
export async function retrying<T>(call: () => Promise<T>, opts: RetryOptions): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      const value = await call()
      if (attempt > 0) opts.onRecovered?.()
      return value
    } catch (e) {
      if (!opts.retryIf(e) || opts.signal?.aborted) throw e
      let wait = backoff(attempt, { jitter: 0, ...opts })
      if (opts.deadline !== undefined) {
        const left = opts.deadline - Date.now()
        if (left <= 0) throw opts.late ? opts.late(e) : e
        wait = Math.min(wait, left)
      }
      opts.onRetry?.(e, wait)
      if (!(await sleep(wait, opts.signal))) throw e
    }
  }
}

/**
 * Resolve with the name of the first of `signals` this process receives (the handlers are removed
 * again), or with null when `abort` aborts first. While waiting, the default action of those signals
 * (terminating the process) is replaced by this wait.
 */
export function waitForSignal(signals: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM"], abort?: AbortSignal): Promise<NodeJS.Signals | null> {
  if (abort?.aborted) return Promise.resolve(null)
  return new Promise(resolve => {
    const handlers = new Map<NodeJS.Signals, () => void>()
    const done = (s: NodeJS.Signals | null) => {
      for (const [sig, h] of handlers) process.off(sig, h)
      abort?.removeEventListener("abort", onAbort)
      resolve(s)
    }
    const onAbort = () => done(null)
    for (const sig of signals) {
      const h = () => done(sig)
      handlers.set(sig, h)
      process.once(sig, h)
    }
    abort?.addEventListener("abort", onAbort, { once: true })
  })
}
