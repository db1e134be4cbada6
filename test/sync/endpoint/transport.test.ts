// The endpoint's transport in one process (src/sync/endpoint/server.ts and client.ts): requests share a
// kept connection, answers come back by id whatever their order, and an endpoint that is closing answers
// what it took and takes nothing new (its sender must then go to the store, not wait or get a double).
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { callEndpoint, findEndpoint } from "../../../src/sync/endpoint/client.js"
import { startEndpoint } from "../../../src/sync/endpoint/server.js"
import { tempDir } from "../helpers.js"

let dir: string
let cleanup: () => Promise<void>
beforeEach(async () => ({ dir, cleanup } = await tempDir("concord-ep-transport-")))
afterEach(async () => cleanup())

const PLAN = "2x9PLwhWNNSuuXNuU6pxrQB2LAVj"

function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void
  const wait = new Promise<void>(r => (open = r))
  return { wait, open }
}

describe("endpoint transport", () => {
  it("answers many requests on one connection, each by its id, in whatever order they finish", async () => {
    const gates = new Map<number, ReturnType<typeof gate>>()
    const server = await startEndpoint({
      storeDir: dir,
      planId: PLAN,
      host: "h",
      handlers: {
        report: async input => {
          const n = (input as { n: number }).n
          const g = gate()
          gates.set(n, g)
          await g.wait
          return { n }
        },
      },
    })
    try {
      const info = findEndpoint(dir, PLAN, "h")!
      const calls = Array.from({ length: 10 }, (_, n) => callEndpoint(info, "report", "tester", { n }))
      while (gates.size < 10) await new Promise(r => setTimeout(r, 5))
      for (let n = 9; n >= 0; n--) gates.get(n)!.open() // the last one asked finishes first
      const out = await Promise.all(calls)
      expect(out.map(o => (o.kind === "answered" && o.response.ok ? (o.response.result as { n: number }).n : -1))).toEqual([...Array(10).keys()])
    } finally {
      await server.close()
    }
  })

  it("a closing endpoint answers the request it took and refuses the next one on the same connection as not taken", async () => {
    let taken = 0
    const first = gate()
    const started = gate()
    const server = await startEndpoint({
      storeDir: dir,
      planId: PLAN,
      host: "h",
      handlers: {
        report: async () => {
          taken++
          started.open()
          await first.wait
          return { ok: 1 }
        },
      },
    })
    const info = findEndpoint(dir, PLAN, "h")!
    const a = callEndpoint(info, "report", "tester", { n: 1 })
    await started.wait
    const closed = server.close()
    const b = callEndpoint(info, "report", "tester", { n: 2 })
    await new Promise(r => setTimeout(r, 50))
    first.open()
    const [ra, rb] = await Promise.all([a, b])
    await closed
    expect(ra).toMatchObject({ kind: "answered", response: { ok: true } })
    expect(rb).toMatchObject({ kind: "unavailable", sent: false })
    expect(taken).toBe(1) // the second request was never applied: its sender stores it itself, once
    expect(findEndpoint(dir, PLAN, "h")).toBeUndefined() // the info file is gone with it
  })
})
