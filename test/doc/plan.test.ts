import * as A from "@automerge/automerge"
import { describe, expect, it } from "vitest"
import { parseChangeNote } from "../../src/doc/actor.js"
import { InputError, InvalidTransitionError } from "../../src/doc/errors.js"
import {
  acquireLease,
  approveCheckpoint,
  cancelPlan,
  clearCheckpoint,
  createPlan,
  getJob,
  LeaseHeldError,
  raiseCheckpoint,
  readPlan,
  retryJob,
  setJobStatus,
  setPlanStatus,
  skipJob,
  statusConflicts,
} from "../../src/doc/plan.js"
import { JOB_RANK, JOB_STATUSES, JOB_TRANSITIONS } from "../../src/doc/states.js"
import { ctx, fork, spec } from "./helpers.js"

const abc = () => createPlan(spec([{ name: "A" }, { name: "B" }, { name: "C" }]), { baseDir: "/tmp" }, ctx())

describe("state machine tables", () => {
  it("every job transition within an attempt raises the rank (the machine is a DAG)", () => {
    for (const from of JOB_STATUSES) for (const to of JOB_TRANSITIONS[from]) expect(JOB_RANK[to]).toBeGreaterThan(JOB_RANK[from])
  })
})

describe("plan document", () => {
  it("creates every job queued at attempt 1, plan pending, and reads plain values back", () => {
    const v = readPlan(abc())
    expect(v.status).toBe("pending")
    expect(v.jobs.map(j => [j.name, j.status, j.attempt])).toEqual([
      ["A", "queued", 1],
      ["B", "queued", 1],
      ["C", "queued", 1],
    ])
    expect(typeof v.name).toBe("string")
    expect(v.checkpoint).toBeNull()
  })

  it("copilot plans start waiting at checkpoint approval", () => {
    const v = readPlan(createPlan(spec([{ name: "A" }], { mode: "copilot" }), { baseDir: "." }, ctx()))
    expect([v.status, v.checkpoint, v.checkpointSeq]).toEqual(["pending", "approval", 1])
  })

  it("rejects an invalid transition with a typed error and writes nothing", () => {
    const doc = abc()
    const heads = A.getHeads(doc)
    expect(() => setJobStatus(doc, "A", "merged", {}, ctx())).toThrow(InvalidTransitionError)
    expect(() => setJobStatus(doc, "A", "merged", {}, ctx())).toThrow(/job "A" attempt 1: cannot go from queued to merged/)
    const failed = setJobStatus(setJobStatus(doc, "A", "running", {}, ctx()), "A", "failed", {}, ctx())
    expect(() => setJobStatus(failed, "A", "running", {}, ctx())).toThrow(/cannot go from failed to running/)
    expect(A.getHeads(doc)).toEqual(heads)
    expect(() => setJobStatus(doc, "nope", "running", {}, ctx())).toThrow(/has no job "nope"/)
    expect(() => setPlanStatus(doc, "completed", ctx())).toThrow(/cannot go from pending to completed/)
  })

  it("records who made each change and what it did", () => {
    let doc = abc()
    doc = setJobStatus(doc, "A", "running", { pid: 42 }, ctx("orchestrator@m1:7"))
    doc = setJobStatus(doc, "A", "failed", { exitCode: 1 }, ctx("orchestrator@m1:7"))
    const notes = A.getChangesMetaSince(doc, []).map(c => parseChangeNote(c.message))
    expect(notes.at(-1)).toMatchObject({ by: "orchestrator@m1:7", did: "job A #1: running -> failed (exit 1)" })
    expect(getJob(readPlan(doc), "A").current).toMatchObject({ status: "failed", exitCode: 1, pid: 42, statusBy: "orchestrator@m1:7" })
  })

  it("the founding bug: a stale pause merges with concurrent completions", () => {
    let base = abc()
    for (const j of ["A", "B", "C"]) base = setJobStatus(base, j, "running", {}, ctx())
    // The orchestrator works from a view read before B and C finished.
    let orch = fork(base)
    orch = setJobStatus(orch, "A", "failed", { exitCode: 1 }, ctx("orchestrator"))
    orch = raiseCheckpoint(orch, "on_error", { jobName: "A", failureKind: "job_failed" }, ctx("orchestrator"))
    const b = setJobStatus(fork(base), "B", "completed", {}, ctx("job:B"))
    const c = setJobStatus(fork(base), "C", "completed", {}, ctx("job:C"))
    const merged = A.merge(A.merge(orch, b), c)
    const v = readPlan(merged)
    expect(v.jobs.map(j => j.status)).toEqual(["failed", "completed", "completed"])
    expect([v.status, v.checkpoint, v.checkpointContext?.jobName]).toEqual(["paused", "on_error", "A"])
  })

  it("a stale running racing a completed resolves to completed, on every replica", () => {
    const base = abc()
    // The agent saw A running and completed it.
    let agent = setJobStatus(A.clone(base, { actor: "aa".repeat(16) as A.ActorId }), "A", "running", {}, ctx())
    agent = setJobStatus(agent, "A", "completed", {}, ctx("job:A"))
    // The orchestrator, from an old view, writes running after many other changes (a higher counter).
    let orch = A.clone(base, { actor: "ff".repeat(16) as A.ActorId })
    for (const j of ["B", "C"]) orch = setJobStatus(orch, j, "running", {}, ctx("orchestrator"))
    orch = setJobStatus(orch, "A", "running", { pid: 9 }, ctx("orchestrator"))
    const m1 = A.merge(fork(agent), orch)
    const m2 = A.merge(fork(orch), agent)
    expect(statusConflicts(m1, "A", 1).sort()).toEqual(["completed", "running"])
    for (const m of [m1, m2]) expect(getJob(readPlan(m), "A").status).toBe("completed")
    // Automerge's default winner is the stale value; only the resolution makes this right.
    expect(String(m1.jobs.A.status["1"])).toBe("running")
    // The next write from the resolved view settles the conflict.
    const settled = setJobStatus(m1, "A", "merged", {}, ctx())
    expect(statusConflicts(settled, "A", 1)).toEqual(["merged"])
  })

  it("retry starts a new attempt; writes for the old attempt never touch it", () => {
    let doc = setJobStatus(abc(), "A", "running", {}, ctx())
    const stale = fork(doc)
    doc = setJobStatus(doc, "A", "failed", { exitCode: 2 }, ctx())
    expect(() => retryJob(abc(), "A", ctx())).toThrow(/only failed, stopped, canceled, conflict, needs_rebase jobs can be retried/)
    doc = retryJob(doc, "A", ctx())
    const late = setJobStatus(stale, "A", "completed", { attempt: 1 }, ctx("job:A#1"))
    const v = getJob(readPlan(A.merge(doc, late)), "A")
    expect([v.attempt, v.status]).toEqual([2, "queued"])
    expect(v.attempts[0].status).toBe("completed")
  })

  it("skip cancels an unfinished attempt, or adds a skipped attempt after a failure", () => {
    let doc = skipJob(abc(), "B", ctx())
    expect(getJob(readPlan(doc), "B").current).toMatchObject({ n: 1, status: "canceled", skipped: true })
    doc = setJobStatus(doc, "A", "running", {}, ctx())
    doc = setJobStatus(doc, "A", "failed", {}, ctx())
    doc = skipJob(doc, "A", ctx())
    expect(getJob(readPlan(doc), "A").current).toMatchObject({ n: 2, status: "canceled", skipped: true })
  })

  it("checkpoints: raise, approve exactly the current one, clear", () => {
    let doc = setPlanStatus(abc(), "running", ctx())
    expect(() => approveCheckpoint(doc, { id: "x" }, ctx())).toThrow(/not waiting at a checkpoint/)
    doc = raiseCheckpoint(doc, "on_error", { jobName: "A", failureKind: "job_failed" }, ctx())
    expect(() => approveCheckpoint(doc, { id: "x", checkpoint: "pre_merge" }, ctx())).toThrow(/waiting at checkpoint on_error, not pre_merge: refusing/)
    const r = approveCheckpoint(doc, { id: "ap1", checkpoint: "on_error" }, ctx("user@laptop"))
    expect(r.approval).toMatchObject({ checkpoint: "on_error", seq: 1, by: "user@laptop", job: "A" })
    expect(approveCheckpoint(r.doc, { id: "ap2" }, ctx()).approval.id).toBe("ap1")
    doc = clearCheckpoint(r.doc, ctx())
    const v = readPlan(doc)
    expect([v.status, v.checkpoint, v.approvals.length]).toEqual(["running", null, 1])
  })

  it("a concurrent pause and resume resolve to paused", () => {
    let doc = setPlanStatus(abc(), "running", ctx())
    doc = raiseCheckpoint(doc, "on_error", { jobName: "A" }, ctx())
    const resumed = clearCheckpoint(fork(doc), ctx())
    const paused = raiseCheckpoint(fork(doc), "on_error", { jobName: "B" }, ctx())
    const v = readPlan(A.merge(resumed, paused))
    expect([v.status, v.checkpoint, v.checkpointContext?.jobName, v.checkpointSeq]).toEqual(["paused", "on_error", "B", 2])
  })

  it("cancel marks the plan and every unfinished job canceled, leaving finished ones", () => {
    let doc = setJobStatus(abc(), "A", "running", {}, ctx())
    doc = setJobStatus(doc, "A", "completed", {}, ctx())
    doc = setJobStatus(doc, "B", "running", {}, ctx())
    doc = cancelPlan(doc, ctx())
    const v = readPlan(doc)
    expect([v.status, ...v.jobs.map(j => j.status)]).toEqual(["canceled", "completed", "canceled", "canceled"])
  })

  it("lease: refused while held, renewed by its holder, taken over after expiry", () => {
    let doc = acquireLease(abc(), { holder: "o1", host: "h", pid: 1, ttlMs: 1000 }, { by: "o1", now: 10_000 })
    expect(() => acquireLease(doc, { holder: "o2", host: "h", pid: 2, ttlMs: 1000 }, { by: "o2", now: 10_500 })).toThrow(LeaseHeldError)
    expect(() => acquireLease(doc, { holder: "o2", host: "h", pid: 2, ttlMs: 1000 }, { by: "o2", now: 10_500 })).toThrow(/already run by o1/)
    doc = acquireLease(doc, { holder: "o2", host: "h", pid: 2, ttlMs: 1000 }, { by: "o2", now: 11_001 })
    expect(readPlan(doc).lease?.holder).toBe("o2")
    expect(InputError).toBeDefined()
  })
})
