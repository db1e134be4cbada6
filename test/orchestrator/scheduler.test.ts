/** The scheduler as a pure function: plan state and observations in, actions out. No processes, no clock. */
import * as A from "@automerge/automerge"
import { describe, expect, it } from "vitest"
import type { WriteContext } from "../../src/doc/actor.js"
import { approveCheckpoint, createPlan, type PlanDocument, readPlan, retryJob, setJobStatus, skipJob, cancelPlan, setPlanStatus } from "../../src/doc/plan.js"
import type { PlanSpec } from "../../src/doc/spec.js"
import { applyActions } from "../../src/orchestrator/policy.js"
import { type Action, decide, type Observations, type ProcessExit } from "../../src/orchestrator/scheduler.js"

let t = 1_000_000
const c = (): WriteContext => ({ by: "test", now: ++t })

function plan(jobs: [string, string[]?][], extra: Partial<PlanSpec> = {}): PlanDocument {
  return createPlan(
    {
      name: "p",
      mode: "autopilot",
      maxParallel: 3,
      graceMs: 1000,
      staleMs: 60_000,
      ...extra,
      jobs: jobs.map(([name, deps]) => ({ name, run: "true", dependsOn: deps ?? [], env: {} })),
    },
    { baseDir: "." },
    c()
  )
}

const obs = (o: Partial<Observations> = {}): Observations => ({ now: t + 1, alive: new Set(), exits: [], lost: new Set(), ...o })
const kinds = (as: Action[]) =>
  as.map(a =>
    "job" in a
      ? `${a.kind}:${a.job}${a.kind === "setJob" ? `=${a.to}` : ""}`
      : a.kind === "setPlan"
        ? `setPlan=${a.to}`
        : `${a.kind}:${"checkpoint" in a ? a.checkpoint : ""}`
  )

/** One round the way the runner does it: decide, then apply every action to one document (applyActions). */
function step(doc: PlanDocument, o: Partial<Observations> = {}): { doc: PlanDocument; actions: Action[]; exit?: { code: number } } {
  const d = decide(readPlan(doc), obs(o))
  const r = applyActions(doc, d.actions, { ...c(), host: "h", logOf: (job, n) => `logs/p/${job}.${n}.log` })
  return { doc: r.doc, actions: d.actions, exit: d.exit }
}

const exit = (job: string, code: number | null, signal: string | null = null, attempt = 1): ProcessExit => ({ job, attempt, code, signal, at: t })
const statuses = (doc: PlanDocument) => Object.fromEntries(readPlan(doc).jobs.map(j => [j.name, j.status]))

describe("scheduler", () => {
  it("starts a pending autopilot plan and launches independent jobs in spec order", () => {
    const r = decide(readPlan(plan([["a"], ["b"], ["c", ["a"]]])), obs())
    expect(kinds(r.actions)).toEqual(["setPlan=running", "launch:a", "launch:b", "setJob:c=waiting_deps"])
  })

  it("respects maxParallel, counting running jobs from their states", () => {
    let doc = plan([["a"], ["b"], ["c"], ["d"]], { maxParallel: 2 })
    let s = step(doc)
    expect(kinds(s.actions)).toEqual(["setPlan=running", "launch:a", "launch:b"])
    s = step(s.doc, { alive: new Set(["a#1", "b#1"]) })
    expect(s.actions).toEqual([])
    s = step(s.doc, { alive: new Set(["b#1"]), exits: [exit("a", 0)] })
    expect(kinds(s.actions)).toEqual(["setJob:a=completed", "launch:c"])
    expect(readPlan(s.doc).jobs[0].current.note).toMatch(/exited 0 without reporting/)
    doc = s.doc
    expect(statuses(doc)).toEqual({ a: "completed", b: "running", c: "running", d: "queued" })
  })

  it("runs a diamond in dependency order", () => {
    let doc = plan([["top"], ["left", ["top"]], ["right", ["top"]], ["bottom", ["left", "right"]]])
    const order: string[] = []
    for (let i = 0; i < 10; i++) {
      const running = readPlan(doc)
        .jobs.filter(j => j.status === "running")
        .map(j => j.name)
      const s = step(doc, { alive: new Set(running.map(n => `${n}#1`)), exits: running.map(n => exit(n, 0)) })
      order.push(...s.actions.filter(a => a.kind === "launch").map(a => (a as { job: string }).job))
      doc = s.doc
      if (readPlan(doc).status === "completed") break
    }
    expect(order).toEqual(["top", "left", "right", "bottom"])
    expect(readPlan(doc).status).toBe("completed")
  })

  it("an on_error whose job completed after all (its report crossed the record of its lost process) is cleared and the plan resumes", () => {
    let doc = step(plan([["a"], ["b", ["a"]]])).doc
    // two replicas: the orchestrator records a's process lost and pauses; a's agent reports completed
    const agent = setJobStatus(A.clone(doc), "a", "completed", {}, c())
    const orchestrator = step(doc, { lost: new Set(["a#1"]) })
    expect(kinds(orchestrator.actions)).toEqual(["setJob:a=failed", "raise:on_error"])
    doc = A.merge(orchestrator.doc, agent)
    const v = readPlan(doc)
    expect([v.status, v.checkpoint, statuses(doc).a]).toEqual(["paused", "on_error", "completed"])
    const s = step(doc)
    expect(kinds(s.actions)).toEqual(["clear:on_error", "launch:b"])
    expect([readPlan(s.doc).status, readPlan(s.doc).checkpoint]).toEqual(["running", null])
    // a failure that stands keeps its checkpoint
    const failed = step(plan([["a"]]))
    const f = step(failed.doc, { exits: [exit("a", 3)] })
    expect(kinds(step(f.doc).actions)).toEqual([])
  })

  it("a failure pauses at on_error with context, siblings keep running, dependents never start", () => {
    let s = step(plan([["a"], ["b"], ["c", ["a"]]]))
    s = step(s.doc, { alive: new Set(["b#1"]), exits: [exit("a", 2)] })
    expect(kinds(s.actions)).toEqual(["setJob:a=failed", "raise:on_error"])
    const v = readPlan(s.doc)
    expect([v.status, v.checkpoint, v.checkpointContext]).toEqual([
      "paused",
      "on_error",
      { checkpoint: "on_error", jobName: "a", attempt: 1, failureKind: "exit_code", exitCode: 2, message: "exit code 2" },
    ])
    // b reports completed while paused: recorded, nothing new launched, no second checkpoint.
    const doc = setJobStatus(s.doc, "b", "completed", {}, c())
    s = step(doc, { alive: new Set(["b#1"]) })
    expect(s.actions).toEqual([])
    // b's process exits after completing: exit code recorded, status stays completed; then exit 3.
    s = step(doc, { exits: [exit("b", 137, "SIGKILL")] })
    expect(kinds(s.actions)).toEqual(["record:b"])
    expect(s.exit).toEqual({ code: 3, why: "waiting at checkpoint on_error" })
    expect(statuses(s.doc)).toEqual({ a: "failed", b: "completed", c: "waiting_deps" })
  })

  it("a completed report wins over a later non-zero exit; killed processes fail with the signal", () => {
    let s = step(plan([["a"], ["b"]]))
    const doc = setJobStatus(s.doc, "a", "completed", {}, c())
    s = step(doc, { exits: [exit("a", 1), exit("b", null, "SIGTERM")] })
    expect(kinds(s.actions)).toEqual(["record:a", "setJob:b=failed", "raise:on_error"])
    expect(readPlan(s.doc).jobs.map(j => [j.status, j.current.exitCode, j.current.signal])).toEqual([
      ["completed", 1, null],
      ["failed", null, "SIGTERM"],
    ])
  })

  it("stops a completed job's process after the grace period, and a canceled job's at once", () => {
    const s = step(plan([["a"], ["b"]], { graceMs: 1000 }))
    const doc = setJobStatus(skipJob(s.doc, "b", c()), "a", "completed", {}, c())
    const at = readPlan(doc).jobs[0].current.statusAt
    const early = decide(readPlan(doc), obs({ now: at + 10, alive: new Set(["a#1", "b#1"]) }))
    expect(early.actions.filter(a => a.kind === "stop")).toEqual([{ kind: "stop", job: "b", attempt: 1, reason: "job canceled" }])
    const later = decide(readPlan(doc), obs({ now: at + 1001, alive: new Set(["a#1", "b#1"]) }))
    expect(
      later.actions
        .filter(a => a.kind === "stop")
        .map(a => (a as { job: string }).job)
        .sort()
    ).toEqual(["a", "b"])
    expect(later.actions.find(a => a.kind === "stop" && a.job === "a")).toMatchObject({ reason: "reported completed; grace period of 1000 ms over" })
  })

  it("copilot plans wait as pending until approved, then run", () => {
    let doc = plan([["a"]], { mode: "copilot" })
    let s = step(doc)
    expect(s.actions).toEqual([])
    expect(s.exit).toEqual({ code: 3, why: "waiting at checkpoint approval" })
    doc = approveCheckpoint(doc, { id: "x" }, c()).doc
    s = step(doc)
    expect(kinds(s.actions)).toEqual(["clear:approval", "launch:a"])
    expect(readPlan(s.doc).status).toBe("running")
  })

  it("supervisor plans stop at pre_merge per completed job and at pre_pr, each released exactly once", () => {
    let s = step(plan([["a"], ["b", ["a"]]], { mode: "supervisor" }))
    s = step(s.doc, { exits: [exit("a", 0)] })
    expect(kinds(s.actions)).toEqual(["setJob:a=completed", "raise:pre_merge"])
    // Completed is not done in supervisor mode: b waits.
    expect(statuses(s.doc)).toEqual({ a: "completed", b: "waiting_deps" })
    s = step(s.doc)
    expect(s.exit?.code).toBe(3)
    let doc = approveCheckpoint(s.doc, { id: "m1", checkpoint: "pre_merge" }, c()).doc
    s = step(doc)
    expect(kinds(s.actions)).toEqual(["setJob:a=merged", "clear:pre_merge", "launch:b"])
    // The same approval is never acted on twice.
    s = step(s.doc, { exits: [exit("b", 0)] })
    expect(kinds(s.actions)).toEqual(["setJob:b=completed", "raise:pre_merge"])
    doc = approveCheckpoint(s.doc, { id: "m2" }, c()).doc
    s = step(doc)
    expect(kinds(s.actions)).toEqual(["setJob:b=merged", "clear:pre_merge", "raise:pre_pr"])
    doc = approveCheckpoint(s.doc, { id: "pr" }, c()).doc
    s = step(doc)
    expect(kinds(s.actions)).toEqual(["clear:pre_pr", "setPlan=completed"])
    s = step(s.doc)
    expect(s.exit).toEqual({ code: 0, why: "plan completed" })
  })

  it("retry: a new attempt launches; exits of the old attempt are recorded on it only", () => {
    let s = step(plan([["a"], ["b", ["a"]]]))
    s = step(s.doc, { exits: [exit("a", 1)] })
    let doc = retryJob(s.doc, "a", c())
    doc = approveCheckpoint(doc, { id: "r" }, c()).doc
    s = step(doc)
    expect(kinds(s.actions)).toEqual(["clear:on_error", "launch:a"])
    expect(s.actions.find(a => a.kind === "launch")).toMatchObject({ attempt: 2 })
    s = step(s.doc, { alive: new Set(["a#2"]), exits: [exit("a", 0, null, 1)] })
    expect(kinds(s.actions)).toEqual(["record:a"])
    s = step(s.doc, { exits: [exit("a", 0, null, 2)] })
    expect(kinds(s.actions)).toEqual(["setJob:a=completed", "launch:b"])
  })

  it("skip: dependents go on without the skipped job; the plan completes", () => {
    let s = step(plan([["a"], ["b", ["a"]]]))
    s = step(s.doc, { exits: [exit("a", 1)] })
    let doc = skipJob(s.doc, "a", c())
    doc = approveCheckpoint(doc, { id: "s" }, c()).doc
    s = step(doc)
    expect(kinds(s.actions)).toEqual(["clear:on_error", "launch:b"])
    s = step(s.doc, { exits: [exit("b", 0)] })
    expect(kinds(s.actions)).toEqual(["setJob:b=completed", "setPlan=completed"])
  })

  it("continuing past a failure without retry or skip: the plan fails once nothing can run", () => {
    let s = step(plan([["a"], ["b", ["a"]], ["c"]]))
    s = step(s.doc, { alive: new Set(["c#1"]), exits: [exit("a", 1)] })
    const doc = approveCheckpoint(s.doc, { id: "go" }, c()).doc
    s = step(doc, { alive: new Set(["c#1"]) })
    expect(kinds(s.actions)).toEqual(["clear:on_error"])
    s = step(s.doc, { exits: [exit("c", 0)] })
    expect(kinds(s.actions)).toEqual(["setJob:c=completed", "setPlan=failed"])
    s = step(s.doc)
    expect(s.exit).toEqual({ code: 1, why: "plan failed" })
  })

  it("cancel: stops every live process, then exits 1", () => {
    const s = step(plan([["a"], ["b"]]))
    const doc = cancelPlan(s.doc, c())
    const d = decide(readPlan(doc), obs({ alive: new Set(["a#1", "b#1"]) }))
    expect(kinds(d.actions)).toEqual(["stop:a", "stop:b"])
    expect(d.exit).toBeUndefined()
    expect(decide(readPlan(doc), obs()).exit).toEqual({ code: 1, why: "plan canceled" })
  })

  it("reconciliation: a running job whose process is lost fails with 'process lost' and pauses", () => {
    let s = step(plan([["a"], ["b"]]))
    s = step(s.doc, { lost: new Set(["a#1"]), alive: new Set(["b#1"]) })
    expect(kinds(s.actions)).toEqual(["setJob:a=failed", "raise:on_error"])
    const a = readPlan(s.doc).jobs[0]
    expect([a.current.reason, a.current.failureKind]).toEqual(["process lost", "process_lost"])
    expect(readPlan(s.doc).checkpointContext).toMatchObject({ jobName: "a", failureKind: "process_lost", message: "process lost" })
  })

  it("is idempotent: deciding twice on the same state proposes nothing new after the first round is applied", () => {
    const s = step(plan([["a"], ["b", ["a"]]]))
    const again = decide(readPlan(s.doc), obs({ alive: new Set(["a#1"]) }))
    expect(again.actions).toEqual([])
  })
})

describe("git plans (repo:)", () => {
  function gitPlan(jobs: [string, string[]?][]): PlanDocument {
    return createPlan(
      {
        name: "g",
        mode: "autopilot",
        maxParallel: 3,
        graceMs: 1000,
        staleMs: 60_000,
        git: { repo: ".", baseBranch: "main", integrationBranch: "concord/g", test: null, pr: { draft: false } },
        jobs: jobs.map(([name, deps]) => ({ name, run: "true", dependsOn: deps ?? [], env: {} })),
      },
      { baseDir: "." },
      c()
    )
  }
  it("a dependent starts only once its dependency is merged, not merely completed", () => {
    let doc = gitPlan([["a"], ["b", ["a"]]])
    doc = step(doc).doc
    doc = setJobStatus(doc, "a", "completed", {}, c())
    const d = decide(readPlan(doc), obs())
    expect(kinds(d.actions)).not.toContain("launch:b")
    expect(kinds(d.actions)).not.toContain("setPlan=failed") // the queue, not a process, moves a on
    expect(d.exit).toBeUndefined()
    doc = setJobStatus(setJobStatus(setJobStatus(doc, "a", "ready_to_merge", {}, c()), "a", "merging", {}, c()), "a", "merged", {}, c())
    expect(kinds(decide(readPlan(doc), obs()).actions)).toContain("launch:b")
  })
  it("completes only when every job is merged; a job the queue refused pauses the plan at on_error, with the reason", () => {
    let doc = gitPlan([["a"]])
    doc = step(doc).doc
    doc = setJobStatus(doc, "a", "completed", {}, c())
    expect(kinds(decide(readPlan(doc), obs()).actions)).not.toContain("setPlan=completed")
    doc = setJobStatus(setJobStatus(doc, "a", "ready_to_merge", {}, c()), "a", "merging", {}, c())
    const conflicted = setJobStatus(A.clone(doc), "a", "conflict", { reason: "merge conflict in x", failureKind: "merge_conflict" }, c())
    const raised = decide(readPlan(conflicted), obs({ exits: [{ job: "a", attempt: 1, code: 0, signal: null, at: t }] })).actions.find(x => x.kind === "raise")
    expect(raised).toMatchObject({ checkpoint: "on_error", context: { jobName: "a", failureKind: "merge_conflict", message: "merge conflict in x" } })
    const merged = setJobStatus(doc, "a", "merged", {}, c())
    expect(kinds(decide(readPlan(merged), obs()).actions)).toContain("setPlan=completed")
  })
  it("supervisor mode: a job the queue refused after its pre_merge was approved still pauses at on_error (once)", () => {
    let doc = gitPlan([["a"], ["b"]])
    doc = setPlanStatus(doc, "running", c())
    doc = A.change(doc, d => void (d.mode = "supervisor" as never))
    doc = step(doc).doc
    doc = setJobStatus(doc, "a", "completed", {}, c())
    let r = step(doc)
    expect(kinds(r.actions)).toContain("raise:pre_merge")
    doc = approveCheckpoint(r.doc, { id: "x1" }, c()).doc
    doc = step(doc).doc // cleared
    expect(readPlan(doc).checkpoint).toBeNull()
    doc = setJobStatus(
      setJobStatus(setJobStatus(doc, "a", "ready_to_merge", {}, c()), "a", "merging", {}, c()),
      "a",
      "conflict",
      { reason: "merge conflict in x", failureKind: "merge_conflict" },
      c()
    )
    r = step(doc)
    expect(r.actions.find(x => x.kind === "raise")).toMatchObject({ checkpoint: "on_error", context: { jobName: "a", failureKind: "merge_conflict" } })
    expect(kinds(r.actions)).not.toContain("setPlan=failed")
    expect(readPlan(r.doc).checkpoint).toBe("on_error")
    // Approved and cleared: not raised again for the same attempt.
    doc = step(approveCheckpoint(r.doc, { id: "x2" }, c()).doc).doc
    expect(kinds(decide(readPlan(doc), obs()).actions)).not.toContain("raise:on_error")
  })
})
