/** The shared async helpers: abortable sleep, backoff, retried calls, signal wait. */
import { describe, expect, it } from "vitest"
import { backoff, retrying, sleep, waitForSignal } from "../../src/lib/async.js"

describe("lib/async", () => {
  it("sleep resolves true after the time, false at once when aborted (before or during)", async () => {
    const t = Date.now()
    expect(await sleep(30)).toBe(true)
    expect(Date.now() - t).toBeGreaterThanOrEqual(25)
    const ac = new AbortController()
    const p = sleep(10_000, ac.signal)
    setTimeout(() => ac.abort(), 10)
    const t2 = Date.now()
    expect(await p).toBe(false)
    expect(Date.now() - t2).toBeLessThan(5_000)
    expect(await sleep(10_000, ac.signal)).toBe(false)
  })

  it("backoff grows by the factor, is capped, and jitter only shortens within its fraction", () => {
    const none = { jitter: 0 }
    expect([0, 1, 2, 3].map(n => backoff(n, { baseMs: 100, ...none }))).toEqual([100, 200, 400, 800])
    expect(backoff(50, { baseMs: 100, maxMs: 5000, ...none })).toBe(5000)
    expect(backoff(2, { baseMs: 100, jitter: 0.5, random: () => 0 })).toBe(200)
    expect(backoff(2, { baseMs: 100, jitter: 0.5, random: () => 0.999 })).toBe(400)
  })

  it("waitForSignal resolves with the signal received, and removes its handlers; null when aborted", async () => {
    const before = process.listenerCount("SIGUSR2")
    const p = waitForSignal(["SIGUSR2"])
    expect(process.listenerCount("SIGUSR2")).toBe(before + 1)
    process.kill(process.pid, "SIGUSR2")
    expect(await p).toBe("SIGUSR2")
    expect(process.listenerCount("SIGUSR2")).toBe(before)
    const ac = new AbortController()
    const q = waitForSignal(["SIGUSR2"], ac.signal)
    ac.abort()
    expect(await q).toBeNull()
    expect(process.listenerCount("SIGUSR2")).toBe(before)
  })

  it("retrying: tries again after backoff waits while the failure is accepted, tells each wait and the recovery", async () => {
    const transient = new Error("away")
    let calls = 0
    const waits: number[] = []
    let recovered = 0
    const v = await retrying(
      async () => {
        if (++calls < 4) throw transient
        return "done"
      },
      { retryIf: e => e === transient, baseMs: 5, maxMs: 12, onRetry: (e, w) => (expect(e).toBe(transient), waits.push(w)), onRecovered: () => recovered++ }
    )
    expect(v).toBe("done")
    expect(calls).toBe(4)
    expect(waits).toEqual([5, 10, 12]) // doubled, capped, no jitter unless asked
    expect(recovered).toBe(1)
    // a first try that succeeds is no recovery
    await retrying(async () => 1, { retryIf: () => true, onRecovered: () => recovered++ })
    expect(recovered).toBe(1)
  })

  it("retrying: a failure it does not accept is thrown at once, untouched", async () => {
    const fatal = new Error("refused")
    let calls = 0
    const p = retrying(
      async () => {
        calls++
        throw fatal
      },
      { retryIf: e => e !== fatal, baseMs: 1 }
    )
    await expect(p).rejects.toBe(fatal)
    expect(calls).toBe(1)
  })

  it("retrying: the last wait is cut to the deadline, one try is made at it, then the failure is made late", async () => {
    let calls = 0
    const waits: number[] = []
    const t0 = Date.now()
    const p = retrying(
      async () => {
        calls++
        throw new Error(`try ${calls}`)
      },
      {
        retryIf: () => true,
        baseMs: 40,
        maxMs: 40,
        deadline: t0 + 100,
        late: e => new Error(`too late: ${(e as Error).message}`),
        onRetry: (_, w) => waits.push(w),
      }
    )
    await expect(p).rejects.toThrow(/^too late: try \d+$/)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(95)
    expect(waits.slice(0, 2)).toEqual([40, 40])
    expect(waits.every(w => w <= 40)).toBe(true)
    expect(calls).toBe(waits.length + 1)
    // without `late`, the failure itself
    await expect(retrying(async () => Promise.reject(new Error("x")), { retryIf: () => true, deadline: Date.now() - 1 })).rejects.toThrow(/^x$/)
  })

  it("retrying: an abort during a wait ends the tries with the last failure", async () => {
    const ac = new AbortController()
    let calls = 0
    const p = retrying(
      async () => {
        calls++
        throw new Error(`away ${calls}`)
      },
      { retryIf: () => true, baseMs: 10_000, signal: ac.signal }
    )
    setTimeout(() => ac.abort(), 20)
    const t = Date.now()
    await expect(p).rejects.toThrow("away 1")
    expect(Date.now() - t).toBeLessThan(5_000)
    expect(calls).toBe(1)
  })
})
