/** The shared async helpers: abortable sleep, backoff, signal wait. */
import { describe, expect, it } from "vitest"
import { backoff, sleep, waitForSignal } from "../../src/lib/async.js"

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
})
