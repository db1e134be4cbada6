/**
 * Prompt forwarding through a real `concord serve` process: a writer session appends a report every
 * 20 ms, a watcher session (both RemoteSessions over real sockets) records when it first sees each. With
 * automerge-repo's stock forwarding every change waits up to 100 ms on the writer's Repo and again on the
 * server's; with prompt.ts it goes at once on both. Nothing is lost, everyone ends with the same heads
 * (the server's durably), and the line goes quiet once everyone has everything.
 */
import * as A from "@automerge/automerge"
import path from "node:path"
import { performance } from "node:perf_hooks"
import { afterAll, describe, expect, it } from "vitest"
import { reportDocId } from "../../../src/doc/ids.js"
import { appendReport, readReports, type ReportsDocument } from "../../../src/doc/reports.js"
import { RemoteSession } from "../../../src/sync/net/client.js"
import { addTokenCli, createPlanCli, FOUNDING_PLAN, ok, rm, startServerProcess, tempRoot, until } from "./helpers.js"

const roots: string[] = []
afterAll(() => roots.forEach(rm))
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const N = 60

/** One run: its own server store and server process; `stock` turns prompt forwarding off everywhere. */
async function run(stock: boolean) {
  const root = tempRoot("concord-prompt-")
  roots.push(root)
  const s = path.join(root, "server")
  const id = await createPlanCli(s, FOUNDING_PLAN)
  await ok(s, ["report", "progress", "warm-up", "--job", "A", "--plan", id])
  const token = await addTokenCli(s, "*", "admin")
  const server = await startServerProcess(s, [], { env: stock ? { CONCORD_PROMPT_SYNC: "0" } : {} })
  const sessions: RemoteSession[] = []
  try {
    const writer = await RemoteSession.open({ url: server.url, token, promptSync: !stock })
    const watcher = await RemoteSession.open({ url: server.url, token, promptSync: !stock })
    sessions.push(writer, watcher)
    expect(writer.prompt.installed).toBe(!stock)
    const rid = reportDocId(id, "A")
    const w = (await writer.fetch<ReportsDocument>(rid))!
    const v = (await watcher.fetch<ReportsDocument>(rid))!
    const seen = new Map<string, number>()
    let received = 0
    watcher.repo.networkSubsystem.on("message", () => received++)
    v.on("heads-changed", ({ doc }) => {
      const t = performance.now()
      for (const r of readReports(doc)) if (!seen.has(r.message)) seen.set(r.message, t)
    })
    // warm the path first: each process's first run of it compiles code (a one-time cost, not latency)
    for (let i = 0; i < 10; i++) {
      w.update(d => appendReport(d, { status: "progress", message: `warm-${i}`, attempt: 1 }, { by: "test@writer", now: Date.now() }))
      await sleep(20)
    }
    await until("the watcher saw the warm-up", () => seen.has("warm-9"), 30_000)
    await sleep(300) // past the throttle window
    const made: number[] = []
    for (let i = 0; i < N; i++) {
      w.update(d => appendReport(d, { status: "progress", message: `m-${i}`, attempt: 1 }, { by: "test@writer", now: Date.now() }))
      made.push(performance.now())
      await sleep(20)
    }
    await until("the watcher saw every report", () => made.every((_t, i) => seen.has(`m-${i}`)), 30_000)
    const lat = made.map((t, i) => seen.get(`m-${i}`)! - t)
    // the server has everything durably, and the watcher has exactly what the writer has
    await writer.waitSynced([rid], 30_000)
    await until(
      "the watcher converged",
      () =>
        A.getHeads(v.doc() as A.Doc<unknown>)
          .sort()
          .join() ===
        A.getHeads(w.doc() as A.Doc<unknown>)
          .sort()
          .join()
    )
    const onServer = (await writer.api.confirm([rid]))[rid]!
    expect([...onServer].sort()).toEqual(A.getHeads(w.doc() as A.Doc<unknown>).sort())
    expect(readReports(v.doc()).map(r => r.message)).toEqual(["warm-up", ...[...Array(10).keys()].map(i => `warm-${i}`), ...made.map((_t, i) => `m-${i}`)])
    // quiet once everyone has everything: no echo between the server and its peers
    await sleep(500)
    const settled = received
    await sleep(1000)
    const late = received - settled
    return { lat, late, forwards: writer.prompt.installed ? writer.prompt.forwards : 0 }
  } finally {
    for (const x of sessions) await x.close()
    await server.stop("SIGTERM")
  }
}

describe("prompt forwarding through concord serve", () => {
  it("a report every 20 ms reaches the other peer well under the stock 100 ms throttle; nothing lost; converged", async () => {
    // one after the other, each on a warmed path (at once they would share two cores four ways)
    const stock = await run(true)
    const prompt = await run(false)
    const m = { prompt: median(prompt.lat), stock: median(stock.lat) }
    console.log(
      `through concord serve, a report every 20 ms: median ${m.prompt.toFixed(1)} ms, max ${Math.max(...prompt.lat).toFixed(1)} ms ` +
        `(stock throttle: median ${m.stock.toFixed(1)} ms, max ${Math.max(...stock.lat).toFixed(1)} ms); writer forwards ${prompt.forwards}`
    )
    // The stock throttle lets a change wait up to 100 ms on the writer's Repo and again on the server's.
    // Prompt forwarding waits for nothing, but at one report every 20 ms each one's work (two sync
    // exchanges, the server's judgment and audit fsync, three Repos in two processes) comes close to the
    // pace on a busy two-core machine, and reports queue (then both ways slow down, the stock one more:
    // measured under load, prompt medians 60-110 ms against stock 140-330 ms). So: under 60 ms, or well
    // under the stock median measured just before on the same machine.
    expect(m.prompt, JSON.stringify(m)).toBeLessThan(Math.max(60, 0.7 * m.stock))
    expect(m.prompt, JSON.stringify(m)).toBeLessThan(m.stock)
    expect(prompt.forwards).toBeGreaterThan(0)
    expect(stock.forwards).toBe(0)
    expect(prompt.late).toBe(0)
  }, 120_000)
})
