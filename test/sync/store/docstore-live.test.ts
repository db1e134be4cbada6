// DocStore's live mode (one kept copy per document, handed out as it is) and PlanStore's group commit:
// what a long-lived process (concord mcp, concord run's endpoint) relies on.
import * as A from "@automerge/automerge"
import { readdir, stat, utimes } from "node:fs/promises"
import path from "node:path"
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest"
import { validatePlanSpec } from "../../../src/doc/spec.js"
import { digestReports, type ReportDigest, readReports, type ReportsDocument, reportsInChanges } from "../../../src/doc/reports.js"
import { reportDocId } from "../../../src/doc/ids.js"
import { DocStore } from "../../../src/sync/store/DocStore.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { tempDir } from "../helpers.js"

// reportsInChanges counted (it decodes changes: what a live store's own appends spare it)
vi.mock("../../../src/doc/reports.js", async importOriginal => {
  const m = await importOriginal<typeof import("../../../src/doc/reports.js")>()
  return { ...m, reportsInChanges: vi.fn(m.reportsInChanges) }
})

type Counter = { n: number; by?: Record<string, number> }

let dir: string
let cleanup: () => Promise<void>
beforeEach(async () => ({ dir, cleanup } = await tempDir("concord-live-")))
afterEach(async () => cleanup())

const ctx = (by = "test") => ({ by, now: Date.now() })
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

describe("DocStore live mode", () => {
  it("hands out its one copy, sees every other writer's chunks, and changes with one actor", async () => {
    const live = new DocStore(dir, { live: true })
    const other = new DocStore(dir)
    await live.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d ?? A.from<Counter>({ n: 0 }), x => void (x.n = 1)))
    const a = await live.load<Counter>("doc1")
    const b = await live.load<Counter>("doc1")
    expect(a).toBe(b) // no clone per call
    await other.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d!, x => void (x.by = { other: 1 })))
    const c = await live.load<Counter>("doc1")
    expect(c!.by).toEqual({ other: 1 })
    expect(a!.by).toBeUndefined() // the older copy still reads as it was
    for (let i = 0; i < 5; i++) await live.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d!, x => void (x.n += 1)))
    const fresh = await new DocStore(dir).load<Counter>("doc1")
    expect(fresh!.n).toBe(6)
    const actors = new Set(A.getAllChanges(fresh!).map(ch => A.decodeChange(ch).actor))
    expect(actors.size).toBe(2) // the live store's one actor and the other writer's
  })

  it("looks at an unchanged document with two stats, not a listing; sees any other writer's file at its next look", async () => {
    const live = new DocStore(dir, { live: true })
    const other = new DocStore(dir)
    let listings = 0
    const listKeys = live.adapter.listKeys.bind(live.adapter)
    live.adapter.listKeys = async prefix => {
      if (prefix[0] === "doc1") listings++
      return listKeys(prefix)
    }
    const looks = async () => {
      const before = listings
      const doc = await live.load<Counter>("doc1")
      return { doc, listed: (listings - before) / 2 }
    }
    await other.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d ?? A.from<Counter>({ n: 0 }), x => void (x.n = 1)))
    expect((await looks()).listed).toBe(0) // (a first load reads every file: no look for new ones)
    // a directory changed within the last 50 ms is not vouched for by its stamp (a later change could carry
    // the same time): listed each time
    const incDir = path.join(dir, "do", "c1", "incremental")
    const changed = await stat(incDir)
    const racy = vi.spyOn(Date, "now").mockReturnValue(Math.ceil(Math.max(changed.mtimeMs, changed.ctimeMs)) + 10)
    try {
      expect((await looks()).listed).toBe(1)
      expect((await looks()).listed).toBe(1)
    } finally {
      racy.mockRestore()
    }
    await sleep(80)
    expect((await looks()).listed).toBe(1) // listed, and stamped
    for (let i = 0; i < 5; i++) expect(await looks()).toMatchObject({ listed: 0, doc: { n: 1 } })
    // another writer's file is seen at once (its directory changed: listed), also with its directory's
    // modification time set back to what the stamp holds (its change time still moved)
    const { mtime } = await stat(incDir)
    await other.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d!, x => void (x.n = 2)))
    await utimes(incDir, mtime, mtime)
    expect(await looks()).toMatchObject({ listed: 1, doc: { n: 2 } })
    await sleep(80)
    expect((await looks()).listed).toBeLessThanOrEqual(1) // (stamped by the last look, or by this one)
    expect((await looks()).listed).toBe(0)
    // a stamp vouches for at most a second: then a listing again (which also retries files that were not
    // readable yet, and restores quarantined ones)
    const now = Date.now()
    const clock = vi.spyOn(Date, "now").mockReturnValue(now + 1500)
    try {
      expect((await looks()).listed).toBe(1)
      expect((await looks()).listed).toBe(0)
    } finally {
      clock.mockRestore()
    }
    // the store's own writes change the directory too: the next look lists (and finds nothing new)
    await live.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d!, x => void (x.n = 3)))
    expect(await looks()).toMatchObject({ listed: 1, doc: { n: 3 } })
    await sleep(80)
    expect((await looks()).listed).toBeLessThanOrEqual(1)
    expect(await looks()).toMatchObject({ listed: 0, doc: { n: 3 } })
  })

  it("compacts a small document once its chunks pass 8 KiB, where a one-shot store does at 1 KiB (as a stock Repo)", async () => {
    // the same ~350-byte changes, saved one by one through each kind of store
    const bytesBeforeCompacting = async (docId: string, live: boolean) => {
      const store = new DocStore(dir, { live })
      let chunkBytes = 0
      for (let i = 0; i < 40; i++) {
        await store.update<{ jobs: Record<string, string> }, A.Doc<{ jobs: Record<string, string> }>>(docId, d =>
          A.change(d ?? A.from({ jobs: {} as Record<string, string> }), x => void (x.jobs[`j${i}`] = "x".repeat(300)))
        )
        const dirOf = (t: string) => path.join(dir, docId.slice(0, 2), docId.slice(2), t)
        if ((await readdir(dirOf("snapshot")).catch(() => [])).length > 0) return { chunkBytes, saves: i + 1 }
        const files = await readdir(dirOf("incremental"))
        chunkBytes = (await Promise.all(files.map(f => stat(path.join(dirOf("incremental"), f))))).reduce((a, st) => a + st.size, 0)
      }
      return { chunkBytes, saves: Number.POSITIVE_INFINITY }
    }
    const live = await bytesBeforeCompacting("livedoc", true)
    const oneShot = await bytesBeforeCompacting("oneshotdoc", false)
    // (the last chunk, ~350 bytes, is what took them past the floor)
    expect(live.chunkBytes).toBeGreaterThan(8192 - 400)
    expect(live.chunkBytes).toBeLessThanOrEqual(8192)
    expect(oneShot.chunkBytes).toBeLessThanOrEqual(1024)
    expect(oneShot.saves).toBeLessThan(live.saves)
    // both read back whole
    for (const [id, { saves }] of [
      ["livedoc", live],
      ["oneshotdoc", oneShot],
    ] as const) {
      expect(Object.keys((await new DocStore(dir).load<{ jobs: object }>(id))!.jobs)).toHaveLength(saves)
    }
  })

  it("recovers when a caller changes a handed-out copy, or an update throws after changing it", async () => {
    const live = new DocStore(dir, { live: true })
    await live.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d ?? A.from<Counter>({ n: 0 }), x => void (x.n = 1)))
    const handed = (await live.load<Counter>("doc1"))!
    A.change(handed, x => void (x.n = 99)) // against the rule: outdates the kept copy; never saved
    await expect(
      live.update<Counter, A.Doc<Counter>>("doc1", d => {
        A.change(d!, x => void (x.n = 50))
        throw new Error("refused")
      })
    ).rejects.toThrow("refused")
    const next = await live.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d!, x => void (x.n += 1)))
    expect(next.n).toBe(2) // neither the caller's stray change nor the refused one reached the store
    expect((await new DocStore(dir).load<Counter>("doc1"))!.n).toBe(2)
  })

  it("keeps compacting: many changes end in few chunk files, with nothing lost", async () => {
    const live = new DocStore(dir, { live: true, maxIncrementals: 8 })
    for (let i = 0; i < 40; i++) await live.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d ?? A.from<Counter>({ n: 0 }), x => void (x.n += 1)))
    const files = [...(await readdir(path.join(dir, "do", "c1", "incremental")).catch(() => [])), ...(await readdir(path.join(dir, "do", "c1", "snapshot")))]
    expect(files.length).toBeLessThanOrEqual(10)
    expect((await new DocStore(dir).load<Counter>("doc1"))!.n).toBe(40)
  })
})

describe("DocStore live mode: how often it looks at the disk", () => {
  /** Counts the live store's looks at the disk (listings of the document's chunk folders). */
  function countListings(store: DocStore): { n: number } {
    const count = { n: 0 }
    const list = store.adapter.listKeys.bind(store.adapter)
    store.adapter.listKeys = async key => {
      count.n++
      return list(key)
    }
    return count
  }

  it("loads waiting behind another load share its look at the disk, and a later load still sees what another writer wrote before it", async () => {
    const live = new DocStore(dir, { live: true })
    const other = new DocStore(dir)
    await live.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d ?? A.from<Counter>({ n: 0 }), x => void (x.n = 1)))
    const listings = countListings(live)
    const docs = await Promise.all(Array.from({ length: 16 }, () => live.load<Counter>("doc1")))
    expect(docs.every(d => d!.n === 1)).toBe(true)
    // the first load looks (incremental and snapshot folders); the 15 waiting behind it asked before
    // that look began, so they share it
    expect(listings.n).toBeLessThanOrEqual(4)
    await other.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d!, x => void (x.by = { other: 1 })))
    const after = await live.load<Counter>("doc1")
    expect(after!.by).toEqual({ other: 1 })
  })

  it("an update with recentMs skips the look only within that window, and never loses the other writer's change", async () => {
    const live = new DocStore(dir, { live: true })
    const other = new DocStore(dir)
    const bump = (d: A.Doc<Counter> | undefined) => A.change(d ?? A.from<Counter>({ n: 0 }), x => void (x.n += 1))
    await live.update<Counter, A.Doc<Counter>>("doc1", bump)
    await live.load<Counter>("doc1") // a look at the disk
    await other.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d!, x => void (x.by = { other: 1 })))
    const listings = countListings(live)
    // looked just now: the append goes on the kept copy, without the other writer's change yet
    await live.update<Counter, A.Doc<Counter>>("doc1", bump, { recentMs: 60_000 })
    expect(listings.n).toBe(0)
    // a window already over: it looks again, and sees the other writer's change
    const seen = await live.update<Counter, A.Doc<Counter> | undefined>("doc1", d => d, { recentMs: 1 })
    expect(listings.n).toBeGreaterThan(0)
    expect(seen!.by).toEqual({ other: 1 })
    // whatever the live store had seen, the store holds both writers' changes, merged
    const fresh = (await new DocStore(dir).load<Counter>("doc1"))!
    expect(fresh.n).toBe(2)
    expect(fresh.by).toEqual({ other: 1 })
  })

  it("a load with recentMs answers from the copy within that window, and looks again once it is over", async () => {
    const live = new DocStore(dir, { live: true })
    const other = new DocStore(dir)
    await live.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d ?? A.from<Counter>({ n: 0 }), x => void (x.n = 1)))
    await live.load<Counter>("doc1") // a look at the disk
    await other.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d!, x => void (x.by = { other: 1 })))
    const listings = countListings(live)
    const recent = await live.load<Counter>("doc1", { recentMs: 60_000 })
    expect(listings.n).toBe(0)
    expect(recent!.by).toBeUndefined() // the copy as it was: the caller must not take a missing fact as final
    const looked = await live.load<Counter>("doc1", { recentMs: 1 })
    expect(listings.n).toBeGreaterThan(0)
    expect(looked!.by).toEqual({ other: 1 })
    // a store that is not live has no such copy: every load reads the disk
    const plain = new DocStore(dir)
    await plain.load<Counter>("doc1")
    await other.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d!, x => void (x.n = 2)))
    expect((await plain.load<Counter>("doc1", { recentMs: 60_000 }))!.n).toBe(2)
  })
})

describe("PlanStore group commit (live)", () => {
  it("checks a report id against the log's ids read once, not the whole log per report; read again when another writer's report came in", async () => {
    const setup = new PlanStore(dir)
    const { id } = await setup.createPlan(validatePlanSpec({ name: "r", jobs: [{ name: "a", run: "true" }] }), dir, ctx())
    const live = new PlanStore(dir, { live: true })
    const send = (rid: string, message = rid) => live.appendReport(id, "a", { status: "progress", message, attempt: 1, rid }, ctx())
    for (let i = 0; i < 30; i++) await send(`report-${String(i).padStart(4, "0")}`)
    const readsAfterFirst = live.ridStats.reads
    expect(readsAfterFirst).toBeLessThanOrEqual(2) // the new log, then the log as this store first wrote it
    // a report id already in the log, sent again (a retried send), is kept once, from the index
    await send("report-0003", "again")
    await send("report-0029", "again")
    expect(live.ridStats.reads).toBe(readsAfterFirst)
    // another writer (a one-shot `concord report` that fell back to the store) adds a report with its id
    await new PlanStore(dir).appendReport(id, "a", { status: "progress", message: "elsewhere", attempt: 1, rid: "report-other" }, ctx("other"))
    // once this store has looked at the disk again (at most every second), the same id is not doubled
    await new Promise(r => setTimeout(r, 1100))
    await send("report-other", "again")
    expect(live.ridStats.reads).toBe(readsAfterFirst + 1) // the merged log's ids were read again
    await send("report-0030")
    await live.close()
    const messages = readReports(await new PlanStore(dir).loadReports(id, "a")).map(r => r.message)
    expect(messages.filter(m => m === "again")).toEqual([])
    expect(messages.filter(m => m === "elsewhere")).toHaveLength(1)
    expect(messages).toHaveLength(32)
  })

  it("writes concurrent reports to one log together, each durable before its call resolves, none lost or doubled", async () => {
    const setup = new PlanStore(dir)
    const { id } = await setup.createPlan(validatePlanSpec({ name: "g", jobs: [{ name: "a", run: "true" }] }), dir, ctx())
    const live = new PlanStore(dir, { live: true })
    const n = 40
    const calls = Array.from({ length: n }, (_, i) =>
      live.appendReport(id, "a", { status: "progress", message: `r${i}`, progress: i, attempt: 1, rid: `report-${String(i).padStart(4, "0")}` }, ctx(`s${i}`))
    )
    // the same report id sent twice (a sender that retried) is kept once
    calls.push(live.appendReport(id, "a", { status: "progress", message: "r7", progress: 7, attempt: 1, rid: "report-0007" }, ctx("s7")))
    await Promise.all(calls)
    await live.close() // the digest it owes is written before the directory goes
    const fromDisk = await new PlanStore(dir).loadReports(id, "a")
    const messages = readReports(fromDisk).map(r => r.message)
    expect(messages.sort()).toEqual(Array.from({ length: n }, (_, i) => `r${i}`).sort())
    const rid = reportDocId(id, "a")
    const chunkDir = path.join(dir, rid.slice(0, 2), rid.slice(2))
    const chunks =
      (await readdir(path.join(chunkDir, "incremental")).catch(() => [])).length + (await readdir(path.join(chunkDir, "snapshot")).catch(() => [])).length
    expect(chunks).toBeLessThan(n) // batched: fewer writes than reports
  })

  it("with groupWrites, reports to 16 logs at once are made durable together: one change, one chunk file and one fsync per log", async () => {
    const jobs = Array.from({ length: 16 }, (_, i) => `j${i}`)
    const setup = new PlanStore(dir)
    const { id } = await setup.createPlan(validatePlanSpec({ name: "g", jobs: jobs.map(name => ({ name, run: "true" })) }), dir, ctx())
    const live = new PlanStore(dir, { live: true, groupWrites: true })
    // each log's first report makes its directories (the usual write path); from then on, groups
    await Promise.all(jobs.map(j => live.appendReport(id, j, { status: "working", message: "first", attempt: 1 }, ctx())))
    const stats = live.docs.adapter.groupStats
    const before = { ...stats }
    const all = await Promise.all(jobs.map(j => live.appendReport(id, j, { status: "progress", message: `at once ${j}`, attempt: 1 }, ctx(j))))
    // one group, or a few when some log's look at the disk for other writers' chunks (at most every
    // second) came due and its report reached the writer a moment later
    expect(stats.groups - before.groups).toBeGreaterThanOrEqual(1)
    expect(stats.groups - before.groups).toBeLessThanOrEqual(4)
    expect(stats.files - before.files).toBe(16)
    expect(stats.fileSyncs - before.fileSyncs).toBe(16)
    expect(stats.dirSyncs - before.dirSyncs).toBe(16) // one directory per log
    // durable and visible to every other process once the calls resolved: read by a store of its own
    const reader = new PlanStore(dir)
    for (const [i, j] of jobs.entries()) {
      const log = await reader.loadReports(id, j)
      expect(readReports(log).map(r => r.message)).toEqual(["first", `at once ${j}`])
      expect(A.getHeads(log!)).toEqual(all[i]) // one change per log: the same heads
    }
    await live.close()
  })

  it("one report a batch cannot take (an invalid report id) fails alone", async () => {
    const setup = new PlanStore(dir)
    const { id } = await setup.createPlan(validatePlanSpec({ name: "g", jobs: [{ name: "a", run: "true" }] }), dir, ctx())
    const live = new PlanStore(dir, { live: true })
    const results = await Promise.allSettled([
      live.appendReport(id, "a", { status: "progress", message: "ok1", attempt: 1 }, ctx()),
      live.appendReport(id, "a", { status: "progress", message: "bad", attempt: 1, rid: "x" }, ctx()),
      live.appendReport(id, "a", { status: "progress", message: "ok2", attempt: 1 }, ctx()),
    ])
    await live.close()
    expect(results.map(r => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"])
    const messages = readReports(await new PlanStore(dir).loadReports(id, "a")).map(r => r.message)
    expect(messages.sort()).toEqual(["ok1", "ok2"])
  })
})

describe("PlanStore digests (live)", () => {
  it("a live store's cached digests catch up shortly after its writes, and on close", async () => {
    const setup = new PlanStore(dir)
    const { id } = await setup.createPlan(
      validatePlanSpec({
        name: "d",
        jobs: [
          { name: "a", run: "true" },
          { name: "b", run: "true" },
        ],
      }),
      dir,
      ctx()
    )
    const live = new PlanStore(dir, { live: true })
    await live.appendReport(id, "a", { status: "progress", message: "first", progress: 10, attempt: 1 }, ctx())
    await new Promise(r => setTimeout(r, 600))
    const seen = await new PlanStore(dir).loadReportDigests(id, ["a", "b"])
    expect(seen.get("a")!.byAttempt["1"].last!.message).toBe("first")
    await live.appendReport(id, "b", { status: "working", message: "second", attempt: 1 }, ctx())
    await live.close()
    // the digest cache now covers every chunk: a reader takes it from the cache (delete the logs' chunk
    // files' content would not be noticed; instead check that the cache file names the newest report)
    const cacheFile = path.join(dir, "cache", "digests", `${reportDocId(id, "b")}.json`)
    const { readFile } = await import("node:fs/promises")
    expect(JSON.parse(await readFile(cacheFile, "utf8")).digest.byAttempt["1"].last.message).toBe("second")
  })
})

describe("PlanStore digests (live): its own appends folded as they are made", () => {
  // A digest with its records as reportsInChanges reads them (digestReports, which reads the list, also
  // carries each record's rid).
  const norm = (d: ReportDigest) => JSON.parse(JSON.stringify(d, (k, v) => (k === "rid" ? undefined : v)))
  const cached = async (id: string, job: string) => {
    const { readFile } = await import("node:fs/promises")
    return JSON.parse(await readFile(path.join(dir, "cache", "digests", `${reportDocId(id, job)}.json`), "utf8"))
  }
  const setup = async () => {
    const { id } = await new PlanStore(dir).createPlan(validatePlanSpec({ name: "f", jobs: [{ name: "a", run: "true" }] }), dir, ctx())
    return id
  }
  const report = (message: string, progress: number | null, _n: number) => ({ status: "progress", message, progress, attempt: 1 })

  it("the digest it writes is the log's, through single and group commits, without decoding its own changes", async () => {
    const id = await setup()
    const first = new PlanStore(dir, { live: true })
    await first.appendReport(id, "a", report("start", 0, 0), { by: "agent", now: 999 })
    await first.close() // the log's first digest (from the document: there was no cache)
    vi.mocked(reportsInChanges).mockClear()
    const live = new PlanStore(dir, { live: true })
    for (let i = 0; i < 5; i++) await live.appendReport(id, "a", report(`one ${i}`, i * 10, i), { by: "agent", now: 1000 + i })
    // reports that arrive while a write is under way go out together (one change, several records)
    await Promise.all(Array.from({ length: 6 }, (_, i) => live.appendReport(id, "a", report(`many ${i}`, 90 - i, i), { by: "agent", now: 1000 })))
    await live.close()
    expect(reportsInChanges).not.toHaveBeenCalled()
    const log = (await new PlanStore(dir).loadReports(id, "a")) as ReportsDocument
    expect(readReports(log)).toHaveLength(12)
    const entry = await cached(id, "a")
    expect(entry.heads).toEqual([...A.getHeads(log)].sort())
    expect(norm(entry.digest)).toEqual(norm(digestReports(log)))
  })

  it("another writer's reports in between: the digest still holds every report its copy holds", async () => {
    const id = await setup()
    const live = new PlanStore(dir, { live: true })
    await live.appendReport(id, "a", report("live first", 10, 0), { by: "agent", now: 2000 })
    // the first digest, then more own appends, another writer's report, and the live store reading it
    await live.close()
    const live2 = new PlanStore(dir, { live: true })
    await live2.appendReport(id, "a", report("live second", 20, 0), { by: "agent", now: 2001 })
    await new PlanStore(dir).appendReport(id, "a", report("other writer", 99, 0), { by: "other", now: 2002 })
    await live2.loadReports(id, "a") // its copy now holds the other writer's report too
    await live2.appendReport(id, "a", report("live third", 30, 0), { by: "agent", now: 2003 })
    vi.mocked(reportsInChanges).mockClear()
    await live2.close()
    expect(reportsInChanges).toHaveBeenCalled() // what it did not write itself is read from the changes
    const log = (await new PlanStore(dir).loadReports(id, "a")) as ReportsDocument
    expect(readReports(log).map(r => r.message)).toEqual(expect.arrayContaining(["live first", "live second", "other writer", "live third"]))
    const entry = await cached(id, "a")
    expect(entry.heads).toEqual([...A.getHeads(log)].sort())
    expect(norm(entry.digest)).toEqual(norm(digestReports(log)))
    expect(entry.digest.byAttempt["1"].progress).toBe(30)
    expect(entry.digest.last.message).toBe("live third")
  })
})

describe("a document deleted under a long-lived process", () => {
  for (const live of [false, true]) {
    it(`is gone for it too, not served from its copy (${live ? "live" : "kept copy"})`, async () => {
      const store = new DocStore(dir, live ? { live } : {})
      await store.update<Counter, A.Doc<Counter>>("doc1", d => A.change(d ?? A.from<Counter>({ n: 0 }), x => void (x.n = 1)))
      await store.load("doc1")
      await store.load("doc1") // a second load keeps a copy in every mode
      const { rm } = await import("node:fs/promises")
      await rm(path.join(dir, "do"), { recursive: true, force: true })
      expect(await store.load("doc1")).toBeUndefined()
      // and an update starts from nothing, as on a fresh store, instead of writing on top of the lost document
      const next = await store.update<Counter, A.Doc<Counter> | undefined>("doc1", d => d)
      expect(next).toBeUndefined()
    })
  }
})
