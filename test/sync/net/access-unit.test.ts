/**
 * The write rules of the sync server's access control, on Automerge changes directly (no sockets):
 * what a job:NAME token may change in a plan and in its report log, and how the changes inside a sync
 * message are unpacked (plain changes, concatenated chunks, bundles, whole documents).
 */
import * as A from "@automerge/automerge"
import { describe, expect, it } from "vitest"
import {
  acquireLease,
  approveCheckpoint,
  createPlan,
  type PlanDocument,
  raiseCheckpoint,
  retryJob,
  setJobStatus,
  setPlanStatus,
  skipJob,
  updateAttempt,
} from "../../../src/doc/plan.js"
import { appendReport, reportsGenesis, type ReportsDocument } from "../../../src/doc/reports.js"
import { newDocId } from "../../../src/doc/ids.js"
import { AccessPolicy, checkPlanChanges, checkReportChanges, decodeChanges, PlanIndex } from "../../../src/sync/net/access.js"
import type { TokenRecord } from "../../../src/sync/net/tokens.js"
import { ctx, fork, spec } from "../../doc/helpers.js"

const base = () => createPlan(spec([{ name: "A" }, { name: "B" }]), { baseDir: "." }, ctx())
/** Automerge documents are single-use: branch from a copy. */
const br = <T>(d: A.Doc<T>) => A.clone(d)
const newChanges = (before: A.Doc<unknown>, after: A.Doc<unknown>) => A.getChanges(before, after).map(c => A.decodeChange(c))
const judgePlan = (before: PlanDocument, after: PlanDocument) => checkPlanChanges(before, "B", newChanges(before, after), "job:B")

describe("job:NAME in the plan document", () => {
  it("allows the job's own status, attempt facts, skip and retry records", () => {
    const d0 = base()
    const running = setJobStatus(br(d0), "B", "running", { pid: 42, startedAt: 1 }, ctx())
    expect(judgePlan(d0, running)).toEqual({ ok: true })
    const done = setJobStatus(br(running), "B", "completed", { exitCode: 0 }, ctx())
    expect(judgePlan(running, done)).toEqual({ ok: true })
    expect(judgePlan(d0, updateAttempt(br(d0), "B", 1, { heartbeatAt: 5 }, ctx()))).toEqual({ ok: true })
    expect(judgePlan(d0, skipJob(br(d0), "B", ctx()))).toEqual({ ok: true })
    const failed = setJobStatus(br(running), "B", "failed", { reason: "x" }, ctx())
    // a new attempt record (makeMap in jobs.B.attempts) and fields in it, in one change
    expect(judgePlan(failed, retryJob(br(failed), "B", ctx()))).toEqual({ ok: true })
  })

  it("refuses another job, plan-level keys, and structure changes", () => {
    const d0 = base()
    const cases: [string, PlanDocument][] = [
      ["job A", setJobStatus(br(d0), "A", "running", {}, ctx())],
      ["plan status", setPlanStatus(br(d0), "running", ctx())],
      ["checkpoint", raiseCheckpoint(br(d0), "on_error", { jobName: "B" }, ctx())],
      ["lease", acquireLease(br(d0), { holder: "h", host: "x", pid: 1, ttlMs: 1000 }, ctx())],
      ["job record itself", A.change(br(d0), d => void ((d.jobs.B as unknown as Record<string, unknown>).run = new A.ImmutableString("rm -rf /")))],
      ["delete an attempt record", A.change(br(d0), d => void delete (d.jobs.B.attempts as Record<string, unknown>)["1"])],
      ["replace the status map", A.change(br(d0), d => void ((d.jobs.B as unknown as Record<string, unknown>).status = { "1": "merged" }))],
    ]
    const approval = raiseCheckpoint(setJobStatus(setJobStatus(br(d0), "B", "running", {}, ctx()), "B", "failed", {}, ctx()), "on_error", { jobName: "B" }, ctx())
    cases.push(["approval", approveCheckpoint(br(approval), { id: "x" }, ctx()).doc])
    for (const [what, after] of cases) {
      const before = what === "approval" ? approval : d0
      const v = judgePlan(before, after)
      expect(v.ok, `${what}: ${JSON.stringify(v)}`).toBe(false)
    }
  })

  it("accepts writes to either of two attempt records created concurrently (a retry race)", () => {
    const failed = setJobStatus(setJobStatus(base(), "B", "running", {}, ctx()), "B", "failed", {}, ctx())
    const r1 = retryJob(fork(failed), "B", ctx())
    const r2 = retryJob(fork(failed), "B", ctx())
    const merged = A.merge(A.clone(r1), A.clone(r2))
    const conflicts = A.getConflicts(merged.jobs.B.attempts, "2")
    expect(Object.keys(conflicts ?? {}).length).toBe(2)
    // replicas that only saw one of the records write into it: the server (holding the merge) accepts both
    for (const r of [r1, r2]) {
      const on = updateAttempt(br(r), "B", 2, { heartbeatAt: 9 }, ctx())
      const v = checkPlanChanges(merged, "B", newChanges(r, on), "job:B")
      expect(v, JSON.stringify(v)).toEqual({ ok: true })
    }
  })
})

describe("job:NAME in its report log", () => {
  const plan = newDocId()
  it("allows the genesis change and appending reports, nothing else", () => {
    const g = reportsGenesis(plan, "B")
    const one = appendReport(br(g), { status: "progress", message: "a", attempt: 1 }, ctx())
    const two = appendReport(br(one), { status: "completed", message: "b", attempt: 1 }, ctx())
    // a new log: genesis + reports, judged against nothing
    expect(checkReportChanges(plan, "B", undefined, A.getAllChanges(two).map(c => A.decodeChange(c)), "job:B")).toEqual({ ok: true })
    const edit = A.change(br(two), d => void ((d.reports[0] as unknown as Record<string, unknown>).message = new A.ImmutableString("rewritten")))
    const del = A.change(br(two), d => void d.reports.splice(0, 1))
    const root = A.change(br(two), d => void ((d as unknown as Record<string, unknown>).job = new A.ImmutableString("A")))
    for (const [what, after] of [["edit", edit], ["delete", del], ["root", root]] as const) {
      expect(checkReportChanges(plan, "B", two, newChanges(two, after as ReportsDocument), "job:B").ok, what).toBe(false)
    }
    // another job's genesis is not this job's
    expect(checkReportChanges(plan, "B", undefined, A.getAllChanges(reportsGenesis(plan, "A")).map(c => A.decodeChange(c)), "job:B").ok).toBe(false)
  })
})

describe("unpacking a sync message's changes", () => {
  it("reads plain changes, concatenated chunks, bundles and whole documents; refuses garbage", () => {
    let d = A.from<{ n: number; xs: number[] }>({ n: 0, xs: [] })
    const start = A.clone(d)
    for (let i = 0; i < 20; i++) d = A.change(d, x => void ((x.n = i), x.xs.push(i)))
    const changes = A.getChanges(start, d)
    const hashes = changes.map(c => A.decodeChange(c).hash)
    const concat = new Uint8Array(changes.reduce((n, c) => n + c.length, 0))
    changes.reduce((off, c) => (concat.set(c, off), off + c.length), 0)
    expect(decodeChanges(changes).map(c => c.hash)).toEqual(hashes)
    expect(decodeChanges([concat]).map(c => c.hash)).toEqual(hashes)
    expect(decodeChanges([A.saveBundle(d, hashes)]).map(c => c.hash)).toEqual(hashes)
    expect(decodeChanges([A.save(d)]).map(c => c.hash)).toEqual(A.getAllChanges(d).map(c => A.decodeChange(c).hash))
    expect(() => decodeChanges([Uint8Array.of(1, 2, 3)])).toThrow()
    const torn = A.save(d).slice(0, 40)
    expect(() => decodeChanges([torn])).toThrow()
  })

  it("a reader's message with only changes the server already has passes; a new change does not", async () => {
    const index = new PlanIndex()
    const planId = newDocId()
    const d0 = base()
    index.setPlan(planId, "p", ["A", "B"])
    const policy = new AccessPolicy(index)
    const reader: TokenRecord = { id: "tk_r", sha256: "0".repeat(64), role: "reader", plans: [planId], createdAt: 0 }
    const msg = (changes: Uint8Array[]) => ({
      type: "sync",
      documentId: planId,
      data: A.encodeSyncMessage({ heads: [], need: [], have: [], changes }),
    })
    const current = async () => d0 as A.Doc<unknown>
    expect(await policy.judge(reader, msg(A.getAllChanges(d0)), current)).toEqual({ ok: true })
    const more = setJobStatus(br(d0), "A", "running", {}, ctx())
    const v = await policy.judge(reader, msg(A.getChanges(d0, more)), current)
    expect(v.ok).toBe(false)
    // no access to another plan's documents, whatever the message
    const other = await policy.judge(reader, { ...msg(A.getAllChanges(d0)), documentId: newDocId() }, current)
    expect(other.ok).toBe(false)
  })
})
