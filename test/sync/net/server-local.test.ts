/**
 * A process writing `concord serve`'s own store (a CLI on the server's machine): each report reaches a
 * live session at once, from the server's file watch (its poll is set to 10 s here, so nothing can wait
 * for it), and costs the server reading that report's chunk file once, whatever the length of the log;
 * the server's own saves of what it applied cost no look at the directory. Counted, not timed, but for
 * a bound far under the poll.
 */
import { mkdtempSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { performance } from "node:perf_hooks"
import { afterAll, describe, expect, it } from "vitest"
import { reportDocId } from "../../../src/doc/ids.js"
import { readReports } from "../../../src/doc/reports.js"
import { RemoteSession } from "../../../src/sync/net/client.js"
import { SyncServer } from "../../../src/sync/net/server.js"
import { addToken, defaultTokensFile } from "../../../src/sync/net/tokens.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { spec } from "../../doc/helpers.js"
import { until } from "./helpers.js"

const roots: string[] = []
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

describe("local writes into the sync server's store", () => {
  it("reach a live session from the file watch, each chunk file read once; the server's own saves cost no listing", async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), "concord-serverlocal-"))
    roots.push(root)
    const dir = path.join(root, "server")
    const writer = new PlanStore(dir, { onWarning: () => {} })
    const { id } = await writer.createPlan(spec([{ name: "A" }]), root, { by: "tester@host:1", now: Date.now() })
    const rid = reportDocId(id, "A")
    const report = (message: string) => writer.appendReport(id, "A", { status: "progress", message, attempt: 1 }, { by: "job:A#1@host", now: Date.now() })
    // a long log, compacted into one snapshot: each write measured below costs what one report costs
    for (let i = 0; i < 150; i++) await report(i === 149 ? "before" : `old-${i}`)
    const compactor = new PlanStore(dir, { onWarning: () => {}, maxIncrementals: 0 })
    await compactor.appendReport(id, "A", { status: "progress", message: "compacted", attempt: 1 }, { by: "job:A#1@host", now: Date.now() })
    const token = (await addToken(defaultTokensFile(dir), { plans: ["*"], role: "admin", label: "admin" })).secret
    const server = new SyncServer({ storeDir: dir, port: 0, host: "127.0.0.1", log: () => {}, watchPollMs: 10_000 })
    const { url } = await server.start()
    const session = await RemoteSession.open({ url, token })
    try {
      const handle = (await session.fetch(rid, 10_000))!
      expect(handle).toBeDefined()
      const seen = new Map<string, number>()
      const look = () => {
        const t = performance.now()
        for (const r of readReports(handle.doc() as never)) if (!seen.has(r.message)) seen.set(r.message, t)
      }
      handle.on("heads-changed", look)
      look()
      expect(seen.has("compacted")).toBe(true)
      await report("warm")
      await until("the warm-up report", () => seen.has("warm"), 8000, 10)
      await sleep(300) // the server's save of it, and its file event

      // count what the server's store watcher reads and lists for the log, and what the writer writes
      const adapter = server.store.docs.adapter
      const reads: string[] = []
      let listings = 0
      const load = adapter.load.bind(adapter)
      const listKeys = adapter.listKeys.bind(adapter)
      adapter.load = async key => {
        if (key[0] === rid) reads.push(`${key[1]}/${key[2]}`)
        return load(key)
      }
      adapter.listKeys = async prefix => {
        if (prefix[0] === rid) listings++
        return listKeys(prefix)
      }
      const written: string[] = []
      const save = writer.docs.adapter.save.bind(writer.docs.adapter)
      writer.docs.adapter.save = async (key, data, sha) => {
        if (key[0] === rid) written.push(`${key[1]}/${key[2]}`)
        return save(key, data, sha)
      }

      const n = 8
      const durable = new Map<string, number>()
      for (let i = 0; i < n; i++) {
        await report(`m-${i}`)
        durable.set(`m-${i}`, performance.now())
        await until(`report ${i} in the live session`, () => seen.has(`m-${i}`), 8000, 10)
        await sleep(150)
      }
      const lat = [...durable].map(([m, t]) => seen.get(m)! - t)
      // the poll is 10 s: each report came by the file watch (the bound is for a loaded machine)
      expect(Math.max(...lat), `latencies ${lat.map(x => x.toFixed(1)).join(", ")}`).toBeLessThan(3000)
      await sleep(300) // the server's own saves of the last ones, and their file events

      // each file the writer wrote (one per report, and a compaction's snapshot), read once, none other
      expect(written.length).toBeGreaterThanOrEqual(n)
      expect(
        reads.filter(f => !written.includes(f)),
        `read: ${reads.join(", ")}`
      ).toEqual([])
      expect(reads.length, `read: ${reads.join(", ")}; written: ${written.join(", ")}`).toBeLessThanOrEqual(written.length)
      // a look at the document's two directories per write of the writer (and for the files a compaction
      // removes); the server's own saves (its Repo writes what it applied: one more file event per report)
      // add none, where each cost a look too (about 4 per write in all)
      expect(listings, `written: ${written.join(", ")}`).toBeLessThanOrEqual(3 * written.length)
      // durable on the server's side too: what the writer has
      expect(readReports((await new PlanStore(dir, { onWarning: () => {} }).loadReports(id, "A")) as never).map(r => r.message)).toEqual([
        ...Array.from({ length: 149 }, (_, i) => `old-${i}`),
        "before",
        "compacted",
        "warm",
        ...durable.keys(),
      ])
    } finally {
      await session.close()
      await server.close()
    }
  }, 60_000)
})
