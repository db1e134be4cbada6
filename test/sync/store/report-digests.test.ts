/**
 * Status reads report digests from a cache keyed by the heads it covers, kept current by every writer
 * (reports, sync saves, compactions); it must never be stale, and a first status must not need the logs.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { reportDocId } from "../../../src/doc/ids.js"
import * as A from "@automerge/automerge"
import fc from "fast-check"
import type { ReportRecord, ReportsDoc } from "../../../src/doc/model.js"
import { appendReport, digestReports, foldReport, mergeDigests, readReports, reportsGenesis, reportsInChanges } from "../../../src/doc/reports.js"
import { DocStore } from "../../../src/sync/store/DocStore.js"
import { parsePlanSpec } from "../../../src/doc/spec.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { quarantineName } from "../../../src/sync/storage/quarantine.js"

let dir: string
afterEach(() => rmSync(dir, { recursive: true, force: true }))
const ctx = () => ({ by: "t", now: Date.now() })
function listing(docId: string): string[] {
  const base = path.join(dir, docId.slice(0, 2), docId.slice(2))
  return ["incremental", "snapshot"].flatMap(t => (existsSync(path.join(base, t)) ? readdirSync(path.join(base, t)).map(f => `${t}/${f}`) : [])).sort()
}

describe("report digests", () => {
  it("match the logs after every write, from any instance, and survive a damaged cache", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "digests-"))
    const a = new PlanStore(dir, { onWarning: () => {} })
    const { id } = await a.createPlan(parsePlanSpec("name: d\njobs:\n  - { name: x, run: 'true' }\n  - { name: y, run: 'true' }\n"), ".", ctx())
    expect((await a.loadReportDigests(id, ["x", "y"])).size).toBe(0)
    for (let i = 0; i < 30; i++) {
      // Alternate writers: another instance's writes must invalidate the cached digest.
      const writer = i % 2 ? a : new PlanStore(dir, { onWarning: () => {} })
      await writer.appendReport(id, "x", { status: "progress", message: `m${i}`, progress: i, attempt: 1 + (i >= 20 ? 1 : 0) }, ctx())
      // The writer left a digest that matches the files on disk: the next status needs no log.
      const cache = JSON.parse(readFileSync(path.join(dir, "cache", "digests", `${reportDocId(id, "x")}.json`), "utf8"))
      expect(cache.chunks).toEqual(expect.arrayContaining(listing(reportDocId(id, "x"))))
      expect(cache.digest.last.message).toBe(`m${i}`)
      const got = (await new PlanStore(dir, { onWarning: () => {} }).loadReportDigests(id, ["x", "y"])).get("x")
      expect(got).toEqual(digestReports(await a.loadReports(id, "x")))
      expect(got?.last?.message).toBe(`m${i}`)
    }
    const d = (await a.loadReportDigests(id, ["x"])).get("x")!
    expect([d.byAttempt["1"].last?.message, d.byAttempt["1"].progress, d.byAttempt["2"].progress]).toEqual(["m19", 19, 29])
    const cacheDir = path.join(dir, "cache", "digests")
    for (const f of readdirSync(cacheDir)) writeFileSync(path.join(cacheDir, f), "{ not json")
    expect((await a.loadReportDigests(id, ["x"])).get("x")).toEqual(d)
  })
})

describe("report digests kept by every writer", () => {
  const spec = parsePlanSpec("name: d\njobs:\n  - { name: x, run: 'true' }\n")
  const covers = (docId: string) => {
    const cache = JSON.parse(readFileSync(path.join(dir, "cache", "digests", `${docId}.json`), "utf8"))
    return listing(docId).every(c => cache.chunks.includes(c))
  }

  it("a sync-style save of a merged log, and a compaction, leave a digest that covers every chunk", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "digests-"))
    const a = new PlanStore(dir, { onWarning: () => {}, maxIncrementals: 4 })
    const { id } = await a.createPlan(spec, ".", ctx())
    const rid = reportDocId(id, "x")
    await a.appendReport(id, "x", { status: "working", message: "here", attempt: 1 }, ctx())
    // another machine's log, made offline from the same genesis, arrives by sync: saved with DocStore.save
    let remote = appendReport(reportsGenesis(id, "x"), { status: "progress", message: "remote 1", progress: 10, attempt: 1 }, { by: "b", now: Date.now() + 5 })
    remote = appendReport(remote, { status: "progress", message: "remote 2", progress: 20, attempt: 1 }, { by: "b", now: Date.now() + 10 })
    const local = await a.loadReports(id, "x")
    const merged = A.merge(A.clone(local!), remote)
    await new PlanStore(dir, { onWarning: () => {} }).docs.save(rid, merged)
    expect(covers(rid)).toBe(true)
    const fresh = new PlanStore(dir, { onWarning: () => {} })
    expect((await fresh.loadReportDigests(id, ["x"])).get("x")).toEqual(digestReports(merged))
    expect((await fresh.loadReportDigests(id, ["x"])).get("x")?.last?.message).toBe("remote 2")
    // enough writes to compact (maxIncrementals 4): the snapshot is covered too
    for (let i = 0; i < 8; i++) await a.appendReport(id, "x", { status: "progress", message: `c${i}`, progress: i, attempt: 1 }, ctx())
    expect(listing(rid).some(c => c.startsWith("snapshot/"))).toBe(true)
    expect(covers(rid)).toBe(true)
    const after = (await new PlanStore(dir, { onWarning: () => {} }).loadReportDigests(id, ["x"])).get("x")
    expect(after).toEqual(digestReports(await a.loadReports(id, "x")))
  })

  it("a stale cache (a writer that keeps no cache) is caught up from the changes it lacks", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "digests-"))
    const a = new PlanStore(dir, { onWarning: () => {} })
    const { id } = await a.createPlan(spec, ".", ctx())
    const rid = reportDocId(id, "x")
    for (let i = 0; i < 5; i++) await a.appendReport(id, "x", { status: "progress", message: `a${i}`, progress: i, attempt: 1 }, ctx())
    // a plain DocStore (no digest hook), as a stock automerge-repo peer would write
    const raw = new DocStore(dir, { onWarning: () => {} })
    const d = await raw.load<ReportsDoc>(rid)
    await raw.save(rid, appendReport(d as never, { status: "blocked", message: "raw", attempt: 1 }, { by: "raw", now: Date.now() + 50 }))
    expect(covers(rid)).toBe(false)
    const got = (await new PlanStore(dir, { onWarning: () => {} }).loadReportDigests(id, ["x"])).get("x")
    expect(got?.last?.message).toBe("raw")
    expect(got).toEqual(digestReports(await a.loadReports(id, "x")))
    expect(covers(rid)).toBe(true)
  })

  it("appends by one store instance are all by one actor, and digests of many jobs come back in job order", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "digests-"))
    const many = parsePlanSpec(`name: m\njobs:\n${Array.from({ length: 12 }, (_, i) => `  - { name: j${i}, run: 'true' }`).join("\n")}\n`)
    const a = new PlanStore(dir, { onWarning: () => {} })
    const { id } = await a.createPlan(many, ".", ctx())
    const jobs = Array.from({ length: 12 }, (_, i) => `j${i}`)
    await Promise.all(
      jobs.flatMap(j => [1, 2, 3].map(k => a.appendReport(id, j, { status: "progress", message: `${j}-${k}`, progress: k, attempt: 1 }, ctx())))
    )
    const log = await a.loadReports(id, "j3")
    expect(log?.reports.length).toBe(3)
    const actors = new Set(A.getAllChanges(log!).map(c => A.decodeChange(c).actor))
    expect(actors.size).toBe(2) // the shared genesis actor, and this instance's
    rmSync(path.join(dir, "cache"), { recursive: true, force: true })
    const digests = await new PlanStore(dir, { onWarning: () => {} }).loadReportDigests(id, jobs)
    expect([...digests.keys()]).toEqual(jobs)
    for (const j of jobs) expect(digests.get(j)?.byAttempt["1"].progress).toBe(3)
  })
})

describe("status reads cached digests without loading logs", () => {
  const spec = parsePlanSpec("name: d\njobs:\n  - { name: x, run: 'true' }\n  - { name: y, run: 'true' }\n  - { name: z, run: 'true' }\n")
  /** a fresh store (as a new `concord status` process) that counts the documents it loads */
  const counting = () => {
    const s = new PlanStore(dir, { onWarning: () => {} })
    const loaded: string[] = []
    const load = s.docs.load.bind(s.docs)
    s.docs.load = ((id: string, o?: object) => (loaded.push(id), load(id, o))) as typeof s.docs.load
    return { s, loaded }
  }

  it("loads only the logs whose chunk files the cache does not cover, with the same digests as a full read", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "digests-"))
    const a = new PlanStore(dir, { onWarning: () => {} })
    const { id } = await a.createPlan(spec, ".", ctx())
    for (const j of ["x", "y"])
      for (let i = 0; i < 3; i++) await a.appendReport(id, j, { status: "progress", message: `${j}${i}`, progress: i, attempt: 1 }, ctx())
    const full = async () => new Map(await Promise.all(["x", "y"].map(async j => [j, digestReports((await a.loadReports(id, j))!)] as const)))
    let { s, loaded } = counting()
    expect(await s.loadReportDigests(id, ["x", "y", "z"])).toEqual(await full())
    expect(loaded).toEqual([]) // z has no log; x and y come from the cache
    // a writer without the digest hook (a stock automerge-repo peer) adds a chunk to y's log
    const raw = new DocStore(dir, { onWarning: () => {} })
    const rid = reportDocId(id, "y")
    await raw.save(
      rid,
      appendReport((await raw.load<ReportsDoc>(rid)) as never, { status: "blocked", message: "raw", attempt: 1 }, { by: "raw", now: Date.now() + 50 })
    )
    ;({ s, loaded } = counting())
    const got = await s.loadReportDigests(id, ["x", "y", "z"])
    expect(loaded).toEqual([rid])
    expect(got.get("y")?.last?.message).toBe("raw")
    expect(got).toEqual(await full())
    // that read brought the cache up to date: the next status loads nothing
    ;({ s, loaded } = counting())
    expect(await s.loadReportDigests(id, ["x", "y", "z"])).toEqual(got)
    expect(loaded).toEqual([])
  })

  it("lists through the storage adapter while the quarantine holds files, so a chunk valid again is put back", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "digests-"))
    const a = new PlanStore(dir, { onWarning: () => {} })
    const { id } = await a.createPlan(spec, ".", ctx())
    await a.appendReport(id, "x", { status: "progress", message: "first", progress: 1, attempt: 1 }, ctx())
    await a.appendReport(id, "x", { status: "progress", message: "second", progress: 2, attempt: 1 }, ctx())
    const rid = reportDocId(id, "x")
    const [chunk] = listing(rid)
      .filter(c => c.startsWith("incremental/"))
      .slice(-1)
    const file = path.join(dir, rid.slice(0, 2), rid.slice(2), chunk)
    // as if a damaged-looking chunk had been moved aside long ago and is valid now
    mkdirSync(path.join(dir, "quarantine"), { recursive: true })
    renameSync(file, path.join(dir, "quarantine", quarantineName([rid, ...chunk.split("/")], Date.now() - 3_600_000)))
    const warnings: string[] = []
    const s = new PlanStore(dir, { onWarning: m => warnings.push(m) })
    expect((await s.loadReportDigests(id, ["x"])).get("x")?.last?.message).toBe("second")
    expect(existsSync(file)).toBe(true)
    expect(warnings.some(w => /valid now; restored it/.test(w))).toBe(true)
  })
})

describe("digest folding", () => {
  const r = (at: number, message: string, progress: number | null = null, attempt = 1) =>
    ({ status: "progress", message, progress, at, by: "t", attempt }) as ReportRecord
  it("does not depend on order, ignores repeats, and merges like the union of the reports", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 3 }), fc.option(fc.integer({ min: 0, max: 100 })), fc.integer({ min: 1, max: 2 })),
          { maxLength: 12 }
        ),
        fc.integer({ min: 0, max: 12 }),
        (xs, cut) => {
          const reports = xs.map(([at, m, p, att]) => r(at, `m${m}`, p, att))
          const empty = { last: null, byAttempt: {} }
          const fwd = reports.reduce(foldReport, empty)
          const back = [...reports].reverse().reduce(foldReport, empty)
          const twice = [...reports, ...reports].reduce(foldReport, empty)
          const merged = mergeDigests(reports.slice(0, cut).reduce(foldReport, empty), reports.slice(cut).reduce(foldReport, empty))
          expect(back).toEqual(fwd)
          expect(twice).toEqual(fwd)
          expect(merged).toEqual(fwd)
        }
      )
    )
  })
  it("reads the reports appendReport made straight from its changes", () => {
    let doc = reportsGenesis("P", "x")
    for (let i = 0; i < 5; i++)
      doc = appendReport(doc, { status: "progress", message: `m${i}`, progress: i * 10, attempt: 1 + (i % 2) }, { by: `b${i}`, now: 1000 + i })
    const got = reportsInChanges(A.getAllChanges(doc))
    expect(got).toEqual(readReports(doc).map((r, i) => ({ ...r, op: A.getObjectId(doc.reports[i]) })))
    // the same digest either way, and reports made in one millisecond keep their order (by op id)
    let same = reportsGenesis("P", "y")
    for (let i = 0; i < 4; i++) same = appendReport(same, { status: "progress", message: `s${i}`, progress: i, attempt: 1 }, { by: "b", now: 5 })
    expect(digestReports(same).last?.message).toBe("s3")
    expect(reportsInChanges(A.getAllChanges(same))!.reverse().reduce(foldReport, { last: null, byAttempt: {} })).toEqual(digestReports(same))
    // anything else in a change: unknown, so the caller reads the document instead
    const other = A.change(A.clone(doc), d => void ((d as unknown as { extra: number }).extra = 1))
    expect(reportsInChanges(A.getChangesSince(other, A.getHeads(doc)))).toBeUndefined()
  })
})
