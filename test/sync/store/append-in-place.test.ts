// A live store appends reports on the log's Automerge backend (DocStore.changeInPlace) and brings the
// log's JavaScript view up to date only when someone reads it: what every reader in the process relies on.
import * as A from "@automerge/automerge"
import { cp, readFile } from "node:fs/promises"
import path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { reportDocId } from "../../../src/doc/ids.js"
import { digestReports, type ReportDigest, readReports, type ReportsDocument } from "../../../src/doc/reports.js"
import { validatePlanSpec } from "../../../src/doc/spec.js"
import { LocalBackend } from "../../../src/ops/local.js"
import { history } from "../../../src/ops/history.js"
import { DocStore } from "../../../src/sync/store/DocStore.js"
import { PlanStore, type PlanStoreOptions } from "../../../src/sync/store/PlanStore.js"
import { tempDir } from "../helpers.js"

let dir: string
let cleanup: () => Promise<void>
beforeEach(async () => ({ dir, cleanup } = await tempDir("concord-inplace-")))
afterEach(async () => cleanup())

const ACTOR = "1234567890abcdef1234567890abcdef"
const ctxAt = (n: number) => ({ by: `job:a#1@host:${n % 3}`, now: 1_700_000_000_000 + n })
const report = (n: number) => ({
  status: n % 9 === 0 ? "blocked" : "progress",
  message: `step ${n}`,
  progress: n % 4 === 0 ? null : n % 101,
  attempt: 1,
  ...(n % 2 === 0 ? { rid: `rid-${String(n).padStart(8, "0")}` } : {}),
})

async function newPlan(root: string, jobs = ["a"]): Promise<string> {
  const { id } = await new PlanStore(root).createPlan(validatePlanSpec({ name: "p", jobs: jobs.map(name => ({ name, run: "true" })) }), root, ctxAt(0))
  return id
}

const live = (root: string, opts: PlanStoreOptions = {}) => new PlanStore(root, { live: true, onWarning: () => {}, ...opts })

describe("reports appended in place by a live store", () => {
  it("hundreds of appends give the log the A.change path gives it (test/doc: thousands): the same heads and content", async () => {
    // two copies of one store (one plan id: a report log's genesis names its plan), one per path
    const roots = [path.join(dir, "in-place"), path.join(dir, "change")]
    const id = await newPlan(roots[0])
    await cp(roots[0], roots[1], { recursive: true })
    const ids = [id, id]
    const stores = [live(roots[0], { actor: ACTOR }), live(roots[1], { actor: ACTOR, appendInPlace: false })]
    expect(stores.map(s => s.appendsInPlace)).toEqual([true, false])
    const n = 300
    for (let i = 0; i < n; i++) {
      const heads = await Promise.all(stores.map((s, k) => s.appendReport(ids[k], "a", report(i), ctxAt(i))))
      expect(heads[0]).toEqual(heads[1])
    }
    // a report id sent again is kept once on both paths
    await Promise.all(stores.map((s, k) => s.appendReport(ids[k], "a", report(200), ctxAt(99_999))))
    await Promise.all(stores.map(s => s.close()))
    const logs = await Promise.all(roots.map((r, k) => new PlanStore(r).loadReports(ids[k], "a")))
    const byPath = logs.map(l => ({ heads: A.getHeads(l!), reports: readReports(l) }))
    expect(byPath[0].reports).toHaveLength(n)
    expect(byPath[0]).toEqual(byPath[1])
    // (the live stores' own in-memory copies agree with the disk too)
    expect(A.getHeads((await stores[0].loadReports(ids[0], "a"))!)).toEqual(byPath[0].heads)
    expect(stores[0].docs.viewStats.updates).toBe(1)
    expect(stores[1].docs.viewStats.updates).toBe(0)
  })

  it("a reader after N appends sees all N, for one view update per read, not one per append", async () => {
    const id = await newPlan(dir)
    const store = live(dir)
    await store.appendReport(id, "a", report(1), ctxAt(1)) // creates the log (with A.change)
    const views = store.docs.viewStats
    for (const [round, n] of [50, 1, 300].entries()) {
      const before = views.updates
      for (let i = 0; i < n; i++) await store.appendReport(id, "a", report(round * 1000 + i), ctxAt(round * 1000 + i))
      expect(views.updates).toBe(before) // appends alone never update the view
      const log = (await store.loadReports(id, "a"))!
      expect(views.updates).toBe(before + 1)
      expect(
        readReports(log)
          .slice(-n)
          .map(r => r.message)
      ).toEqual(Array.from({ length: n }, (_, i) => `step ${round * 1000 + i}`))
      // reading again with nothing new costs no update
      expect(await store.loadReports(id, "a")).toBe(log)
      expect(views.updates).toBe(before + 1)
    }
    expect(readReports(await store.loadReports(id, "a"))).toHaveLength(352)
    await store.close()
  })
})

// The same guarantees on both paths: in place, and with Automerge.change (appendInPlace: false, the
// path a live store takes when this Automerge build fails the feature check).
for (const inPlace of [true, false]) {
  const mode: PlanStoreOptions = { appendInPlace: inPlace }
  describe(`a live store appending ${inPlace ? "in place" : "with Automerge.change"}`, () => {
    it("every reader in the process sees every acknowledged report: status digests, report logs, history, concurrent senders", async () => {
      const id = await newPlan(dir, ["a", "b"])
      const store = live(dir, { ...mode, groupWrites: true })
      const backend = new LocalBackend(store)
      await backend.appendReport(id, "a", report(1), ctxAt(1))
      for (let round = 0; round < 5; round++) {
        // concurrent senders (group commits), then every kind of read at once
        await Promise.all(Array.from({ length: 12 }, (_, i) => backend.appendReport(id, i % 2 ? "a" : "b", report(100 * round + i), ctxAt(100 * round + i))))
        const [digests, logs] = await Promise.all([backend.reportDigests(id, ["a", "b"]), backend.reportLogs(id, ["a", "b"])])
        expect(digests.get("a")!.last!.message).toBe(`step ${100 * round + 11}`)
        expect(digests.get("b")!.last!.message).toBe(`step ${100 * round + 10}`)
        expect(readReports(logs.get("a"))).toHaveLength(1 + 6 * (round + 1))
        expect(readReports(logs.get("b"))).toHaveLength(6 * (round + 1))
      }
      // history lists changes (a group commit is one, named by its first report): the last round's are there
      const h = await history(backend, { planRef: id, job: "a" })
      expect(h.entries.filter(e => e.at >= 1_700_000_000_400).length).toBeGreaterThan(0)
      await backend.close()
    })

    it("a caller holding the log read before the appends keeps it as it was: its own heads, unchangeable, and it cannot corrupt the log", async () => {
      const id = await newPlan(dir)
      const store = live(dir, mode)
      for (let i = 0; i < 3; i++) await store.appendReport(id, "a", report(i), ctxAt(i))
      const held = (await store.loadReports(id, "a"))!
      const heldHeads = A.getHeads(held)
      for (let i = 3; i < 10; i++) await store.appendReport(id, "a", report(i), ctxAt(i))
      // what it holds reads as it did, and says so by its heads
      expect(readReports(held)).toHaveLength(3)
      expect(A.getHeads(held)).toEqual(heldHeads)
      expect(A.clone(held).reports).toHaveLength(3)
      expect(digestReports(held).last!.message).toBe("step 2")
      // it cannot change it (against the rule: documents handed out are read-only)
      expect(() => A.change(held, d => void d.reports.splice(0, 1))).toThrow(/outdated/)
      expect(() => A.loadIncremental(held, new Uint8Array(0))).toThrow(/out of date/)
      // the next reader sees everything, and so does another process
      for (let i = 10; i < 12; i++) await store.appendReport(id, "a", report(i), ctxAt(i))
      expect(readReports(await store.loadReports(id, "a"))).toHaveLength(12)
      await store.close()
      expect(readReports(await new PlanStore(dir).loadReports(id, "a")).map(r => r.message)).toEqual(Array.from({ length: 12 }, (_, i) => `step ${i}`))
    })

    it("a caller that changes the copy it was handed (against the rule) makes the store load the log again; its change is never saved", async () => {
      const id = await newPlan(dir)
      const store = live(dir, mode)
      await store.appendReport(id, "a", report(0), ctxAt(0))
      const handed = (await store.loadReports(id, "a"))!
      A.change(handed, d => void d.reports.push({ status: "progress", message: "stray", progress: null, at: 1, by: "x", attempt: 1 } as never))
      for (let i = 1; i < 4; i++) await store.appendReport(id, "a", report(i), ctxAt(i))
      const messages = readReports(await new PlanStore(dir).loadReports(id, "a")).map(r => r.message)
      expect(messages).toEqual(["step 0", "step 1", "step 2", "step 3"])
      expect(readReports(await store.loadReports(id, "a")).map(r => r.message)).toEqual(messages)
      await store.close()
    })

    it("another process's reports in between are merged, and a report id it stored is not stored twice", async () => {
      const id = await newPlan(dir)
      const store = live(dir, mode)
      for (let i = 0; i < 5; i++) await store.appendReport(id, "a", report(i * 2), ctxAt(i))
      await new PlanStore(dir).appendReport(id, "a", { status: "progress", message: "elsewhere", attempt: 1, rid: "rid-elsewhere" }, { by: "other", now: 5 })
      await new Promise(r => setTimeout(r, 1100)) // the live store looks at the disk at most every second
      await store.appendReport(id, "a", { status: "progress", message: "elsewhere", attempt: 1, rid: "rid-elsewhere" }, ctxAt(6))
      await store.appendReport(id, "a", report(100), ctxAt(7))
      const mine = readReports(await store.loadReports(id, "a")).map(r => r.message)
      expect(mine.filter(m => m === "elsewhere")).toHaveLength(1)
      expect(mine).toHaveLength(7)
      await store.close()
      expect(
        readReports(await new PlanStore(dir).loadReports(id, "a"))
          .map(r => r.message)
          .sort()
      ).toEqual([...mine].sort())
    })

    it("keeps compacting while the view lags, losing nothing", async () => {
      const id = await newPlan(dir)
      const store = live(dir, { ...mode, maxIncrementals: 8 })
      for (let i = 0; i < 60; i++) await store.appendReport(id, "a", report(i), ctxAt(i))
      const rid = reportDocId(id, "a")
      const chunkDir = path.join(dir, rid.slice(0, 2), rid.slice(2))
      const { readdir } = await import("node:fs/promises")
      const files = [...(await readdir(path.join(chunkDir, "incremental")).catch(() => [])), ...(await readdir(path.join(chunkDir, "snapshot")))]
      expect(files.length).toBeLessThanOrEqual(10)
      expect(store.docs.viewStats.updates).toBe(0)
      expect(readReports(await new PlanStore(dir).loadReports(id, "a"))).toHaveLength(60)
      expect(readReports(await store.loadReports(id, "a"))).toHaveLength(60)
      await store.close()
    })

    it("the digests it caches are the log's, folded from its own appends without bringing the view up to date", async () => {
      const id = await newPlan(dir)
      const first = live(dir, mode)
      await first.appendReport(id, "a", report(0), ctxAt(0))
      await first.close() // the log's first digest
      const store = live(dir, mode)
      for (let i = 1; i < 40; i++) await store.appendReport(id, "a", report(i), ctxAt(i))
      await Promise.all(Array.from({ length: 8 }, (_, i) => store.appendReport(id, "a", report(100 + i), ctxAt(100 + i))))
      await store.close()
      expect(store.docs.viewStats.updates).toBe(0)
      const log = (await new PlanStore(dir).loadReports(id, "a")) as ReportsDocument
      const entry = JSON.parse(await readFile(path.join(dir, "cache", "digests", `${reportDocId(id, "a")}.json`), "utf8"))
      const norm = (d: ReportDigest) => JSON.parse(JSON.stringify(d, (k, v) => (k === "rid" ? undefined : v)))
      expect(entry.heads).toEqual([...A.getHeads(log)].sort())
      expect(norm(entry.digest)).toEqual(norm(digestReports(log)))
    })
  })
}

describe("DocStore.changeInPlace", () => {
  type Counter = { n: number; list: unknown[] }
  const make = (d: A.Doc<Counter> | undefined) => A.change(d ?? A.from<Counter>({ n: 0, list: [] }), x => void (x.n += 1))

  it("a function that throws after changing the backend writes nothing, and the change is dropped with the copy", async () => {
    const store = new DocStore(dir, { live: true })
    await store.update<Counter, A.Doc<Counter>>("doc1", make)
    await expect(
      store.changeInPlace<Counter, void>("doc1", ({ backend }) => {
        backend.put("_root", "n", 99)
        backend.commit("stray", 0)
        throw new Error("refused")
      })
    ).rejects.toThrow("refused")
    expect((await store.load<Counter>("doc1"))!.n).toBe(1)
    expect((await new DocStore(dir).load<Counter>("doc1"))!.n).toBe(1)
    const r = await store.changeInPlace<Counter, string>("doc1", ({ backend }) => {
      backend.put("_root", "n", 2)
      backend.commit("ok", 0)
      return "done"
    })
    expect(r).toEqual({ done: true, result: "done" })
    expect((await store.load<Counter>("doc1"))!.n).toBe(2)
    expect((await new DocStore(dir).load<Counter>("doc1"))!.n).toBe(2)
  })

  it("says when it cannot: no document; and it is for live stores only", async () => {
    const store = new DocStore(dir, { live: true })
    let called = false
    expect(await store.changeInPlace("nodoc", () => void (called = true))).toEqual({ done: false })
    expect(called).toBe(false)
    await expect(new DocStore(dir).changeInPlace("doc1", () => {})).rejects.toThrow(/live/)
  })

  it("view() gives the document up to date to read before the change, and does not let the change reach it", async () => {
    const store = new DocStore(dir, { live: true })
    await store.update<Counter, A.Doc<Counter>>("doc1", make)
    const bump = (n: number) =>
      store.changeInPlace<Counter, A.Doc<Counter>>("doc1", ({ backend, view }) => {
        const seen = view()
        backend.put("_root", "n", n)
        backend.commit(`n=${n}`, 0)
        return seen
      })
    await bump(5)
    const r = await bump(6)
    expect(r.done && r.result.n).toBe(5) // it saw the first change, and not its own
    expect(r.done && A.getHeads(r.result)).not.toEqual(A.getHeads((await store.load<Counter>("doc1"))!))
    expect((await store.load<Counter>("doc1"))!.n).toBe(6)
  })
})

describe("compacting a big document", () => {
  it("waits for a number of chunks in proportion to its snapshot (a change's share of compaction stays the same), and still compacts", async () => {
    const { randomBytes } = await import("node:crypto")
    const { readdir } = await import("node:fs/promises")
    const store = new DocStore(dir, { live: true })
    // ~50 KB of snapshot that does not compress: a limit of ~200 chunks instead of 64
    const big = A.from<{ items: string[]; n: number }>({ items: Array.from({ length: 100 }, () => randomBytes(256).toString("hex")), n: 0 })
    await store.save("bigdoc", big)
    const files = async () => ({
      incremental: (await readdir(path.join(dir, "bi", "gdoc", "incremental")).catch(() => [])).length,
      snapshot: (await readdir(path.join(dir, "bi", "gdoc", "snapshot")).catch(() => [])).length,
    })
    const bump = () => store.update<{ n: number }, A.Doc<{ n: number }>>("bigdoc", d => A.change(d!, x => void (x.n += 1)))
    for (let i = 0; i < 100; i++) await bump()
    expect(await files()).toEqual({ incremental: 100, snapshot: 1 }) // a small document would have been compacted at 65
    for (let i = 0; i < 150; i++) await bump()
    expect((await files()).incremental).toBeLessThan(100) // compacted on the way
    expect((await new DocStore(dir).load<{ n: number; items: string[] }>("bigdoc"))!.n).toBe(250)
  })
})
