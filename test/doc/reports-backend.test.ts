// Appending reports on a log's Automerge backend (what a live store does) instead of with A.change:
// the same change, byte for byte, and a view brought up to date in one batch.
import * as A from "@automerge/automerge"
import { describe, expect, it } from "vitest"
import { InputError } from "../../src/doc/errors.js"
import {
  appendedReports,
  appendReports,
  appendReportsToBackend,
  backendAppendWorks,
  type NewReport,
  readReports,
  reportsGenesis,
  type ReportsDocument,
} from "../../src/doc/reports.js"
import { viewCatchesUp } from "../../src/doc/view.js"

const ACTOR = "abcdefabcdefabcdefabcdefabcdef01" as A.ActorId
const log = () => A.clone(reportsGenesis("plan-x", "job-a"), { actor: ACTOR })

/** The i-th batch of a deterministic stream: 1 to 4 reports, some with report ids (one of them repeated). */
function batchAt(i: number): { report: NewReport; ctx: { by: string; now: number } }[] {
  const size = 1 + (i % 4)
  return Array.from({ length: size }, (_, k) => {
    const n = i * 4 + k
    const report: NewReport = {
      status: n % 7 === 0 ? "blocked" : "progress",
      message: n % 5 === 0 ? "" : `step ${n} ✓ "quoted" \u00e9`,
      progress: n % 3 === 0 ? null : n % 101,
      attempt: 1 + (n % 2),
    }
    // every third batch repeats the report id of the batch before: it is kept once
    if (n % 2 === 0) report.rid = `rid-${String(i % 3 === 2 && k === 0 ? n - 4 : n).padStart(6, "0")}`
    return { report, ctx: { by: `job:a#1@host:${n % 3}`, now: 1_700_000_000_000 + n * 7 } }
  })
}

describe("appendReportsToBackend", () => {
  it("makes the change appendReports makes: thousands of reports give the same heads, changes and content", () => {
    let viaChange = log()
    let inPlace = log()
    const backend = A.getBackend(inPlace)
    const rids = new Set<string>()
    let appended = 0
    for (let i = 0; i < 1000; i++) {
      const batch = batchAt(i)
      const before = viaChange
      viaChange = appendReports(viaChange, batch, rid => rids.has(rid))
      const expected = viaChange === before ? [] : appendedReports(before, viaChange)!
      const records = appendReportsToBackend(backend, batch, rid => rids.has(rid))
      for (const b of batch) if (b.report.rid !== undefined) rids.add(b.report.rid)
      // the records it returns are the ones appended, with their Automerge ids, as a digest folds them
      expect(records).toEqual(expected)
      expect(backend.getHeads()).toEqual(A.getHeads(viaChange))
      appended += records.length
    }
    expect(appended).toBeGreaterThan(2000)
    // the view was left as it was (the genesis) until it is brought up to date, once
    expect(inPlace.reports).toHaveLength(0)
    inPlace = viewCatchesUp(inPlace)
    expect(readReports(inPlace)).toEqual(readReports(viaChange))
    expect(readReports(inPlace)).toHaveLength(appended)
    expect(A.getHeads(inPlace)).toEqual(A.getHeads(viaChange))
    expect(A.save(inPlace)).toEqual(A.save(viaChange))
    // a store reading the saved bytes gets the same document either way
    expect(readReports(A.load<ReportsDocument>(A.save(inPlace)))).toEqual(readReports(viaChange))
  })

  it("brings the view up to date in one batch, however many appends were made since", () => {
    let calls = 0
    let doc = A.clone(reportsGenesis("plan-x", "job-a"), { actor: ACTOR, patchCallback: () => void calls++ }) as ReportsDocument
    const backend = A.getBackend(doc)
    for (let i = 0; i < 200; i++) appendReportsToBackend(backend, batchAt(i), () => false)
    expect(calls).toBe(0)
    doc = viewCatchesUp(doc)
    expect(calls).toBe(1) // one patch application for 200 changes
    expect(doc.reports.length).toBe(A.getBackend(doc).length(A.getObjectId(doc.reports)!))
    // with A.change, one per change
    let viaChange = A.clone(reportsGenesis("plan-x", "job-a"), { actor: ACTOR, patchCallback: () => void calls++ }) as ReportsDocument
    calls = 0
    for (let i = 0; i < 200; i++) viaChange = appendReports(viaChange, batchAt(i), () => false)
    expect(calls).toBe(200)
  })

  it("an invalid report in a batch changes nothing; a batch of reports already in the log makes no change", () => {
    const doc = log()
    const backend = A.getBackend(doc)
    const heads = backend.getHeads()
    const ok = { report: { status: "progress", message: "fine", attempt: 1 }, ctx: { by: "x", now: 1 } }
    const bad = { report: { status: "progress", message: "bad", attempt: 1, progress: 101 }, ctx: { by: "x", now: 2 } }
    expect(() => appendReportsToBackend(backend, [ok, bad], () => false)).toThrow(InputError)
    expect(() => appendReportsToBackend(backend, [ok, { ...ok, report: { ...ok.report, status: "done-ish" } }], () => false)).toThrow(/invalid report status/)
    expect(backend.getHeads()).toEqual(heads)
    expect(backend.pendingOps()).toBe(0)
    const dup = { report: { status: "progress", message: "again", attempt: 1, rid: "rid-already-there" }, ctx: { by: "x", now: 3 } }
    expect(appendReportsToBackend(backend, [dup, dup], rid => rid === "rid-already-there")).toEqual([])
    expect(backend.getHeads()).toEqual(heads)
  })

  it("refuses a document that is not a report log, changing nothing", () => {
    const other = A.from<{ reports: string }>({ reports: "not a list" }) as unknown as ReportsDocument
    const backend = A.getBackend(other)
    const heads = backend.getHeads()
    expect(() => appendReportsToBackend(backend, batchAt(0), () => false)).toThrow(/not a report log/)
    expect(backend.getHeads()).toEqual(heads)
  })

  it("this Automerge build supports it (the feature check a live store asks once)", () => {
    expect(backendAppendWorks()).toBe(true)
  })
})

describe("viewCatchesUp", () => {
  it("gives the document up to whoever holds it: an outdated copy at the heads it shows, which A.change refuses", () => {
    const held = log()
    const heads = A.getHeads(held)
    const mine = viewCatchesUp(held)
    expect(mine).not.toBe(held)
    appendReportsToBackend(A.getBackend(mine), batchAt(0), () => false)
    expect(A.getHeads(held)).toEqual(heads) // its own heads, not the backend's
    expect(held.reports).toHaveLength(0)
    expect(() => A.change(held, d => void d.reports.push({} as never))).toThrow(/outdated/)
    // a copy of it is the document as it shows it
    expect(A.clone(held).reports).toHaveLength(0)
    expect(A.getHeads(A.clone(held))).toEqual(heads)
    expect(viewCatchesUp(mine).reports).toHaveLength(1)
  })
})
