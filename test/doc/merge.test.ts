/** The merge queue kept in the plan document: its state machine as data and its pure reads and writes. */
import * as A from "@automerge/automerge"
import { describe, expect, it } from "vitest"
import type { WriteContext } from "../../src/doc/actor.js"
import { InvalidTransitionError } from "../../src/doc/errors.js"
import {
  enqueueMerge,
  entryKey,
  markMerged,
  MERGE_STATES,
  MERGE_TRANSITIONS,
  mergeCandidates,
  nextMerge,
  queueBusy,
  recordGitBase,
  recordMergeResult,
  startMerge,
} from "../../src/doc/merge.js"
import { approveCheckpoint, createPlan, getJob, type PlanDocument, raiseCheckpoint, readPlan, retryJob, setJobStatus, skipJob } from "../../src/doc/plan.js"
import { validatePlanSpec } from "../../src/doc/spec.js"
import { fork } from "./helpers.js"

let t = 2_000_000
const c = (): WriteContext => ({ by: "orchestrator@test:1", now: ++t })
const BASE = "a".repeat(40)
const C1 = "1".repeat(40)
const C2 = "2".repeat(40)

function gitPlan(jobs: Record<string, unknown>[], extra: Record<string, unknown> = {}): PlanDocument {
  const spec = validatePlanSpec({ name: "q", repo: ".", ...extra, jobs: jobs.map(j => ({ run: "true", ...j })) })
  return recordGitBase(createPlan(spec, { baseDir: "/tmp" }, c()), { baseBranch: "main", baseCommit: BASE }, c())
}
const complete = (d: PlanDocument, job: string) => setJobStatus(setJobStatus(d, job, "running", {}, c()), job, "completed", {}, c())

describe("merge queue state machine", () => {
  it("every transition raises the rank, so a concurrent write resolves to the later state", () => {
    for (const from of MERGE_STATES) for (const to of MERGE_TRANSITIONS[from]) expect(MERGE_STATES.indexOf(to)).toBeGreaterThan(MERGE_STATES.indexOf(from))
  })

  it("a plan without repo has no git record and no queue", () => {
    const d = createPlan(validatePlanSpec({ name: "plain", jobs: [{ name: "a", run: "x" }] }), { baseDir: "." }, c())
    expect("git" in d).toBe(false)
    expect(readPlan(d).git).toBeNull()
    expect(queueBusy(readPlan(d))).toBe(false)
  })

  it("records the base once, and the integration head starts there", () => {
    let d = gitPlan([{ name: "a" }])
    d = recordGitBase(d, { baseBranch: "other", baseCommit: C1 }, c())
    const g = readPlan(d).git!
    expect([g.baseBranch, g.baseCommit, g.head, g.integrationBranch]).toEqual(["main", BASE, BASE, "concord/q"])
  })

  it("a job enters only once completed and its dependencies merged; supervisor mode also needs its pre_merge approved", () => {
    let d = gitPlan([{ name: "a" }, { name: "b", dependsOn: ["a"] }])
    expect(mergeCandidates(readPlan(d))).toEqual([])
    expect(() => enqueueMerge(d, "a", c())).toThrow(InvalidTransitionError)
    d = complete(d, "a")
    expect(mergeCandidates(readPlan(d)).map(j => j.name)).toEqual(["a"])
    d = enqueueMerge(d, "a", c())
    expect(getJob(readPlan(d), "a").status).toBe("ready_to_merge")
    expect(mergeCandidates(readPlan(d))).toEqual([]) // not twice
    // b completed (say, from a retry's stale process) while a is not merged yet: it waits.
    d = complete(d, "b")
    expect(mergeCandidates(readPlan(d))).toEqual([])
    d = startMerge(d, entryKey("a", 1), BASE, c())
    d = recordMergeResult(d, entryKey("a", 1), { kind: "passed", commit: C1 }, c())
    d = markMerged(d, entryKey("a", 1), c())
    expect(mergeCandidates(readPlan(d)).map(j => j.name)).toEqual(["b"])

    let s = gitPlan([{ name: "a" }], { mode: "supervisor" })
    s = complete(s, "a")
    expect(mergeCandidates(readPlan(s))).toEqual([])
    s = raiseCheckpoint(s, "pre_merge", { jobName: "a" }, c(), { job: "a", attempt: 1 })
    expect(mergeCandidates(readPlan(s))).toEqual([])
    s = approveCheckpoint(s, { id: "ok" }, c()).doc
    expect(mergeCandidates(readPlan(s)).map(j => j.name)).toEqual(["a"])
  })

  it("takes entries in queue order, resumes a started one first, and skips attempts that are no longer current", () => {
    let d = gitPlan([{ name: "a" }, { name: "b" }, { name: "c" }])
    for (const j of ["c", "a", "b"]) d = enqueueMerge(complete(d, j), j, c())
    expect(nextMerge(readPlan(d))!.job).toBe("c")
    d = startMerge(d, entryKey("a", 1), BASE, c()) // started out of order (say, by an older runner)
    expect(nextMerge(readPlan(d))!.job).toBe("a")
    d = recordMergeResult(d, entryKey("a", 1), { kind: "passed", commit: C1 }, c())
    expect(nextMerge(readPlan(d))!.key).toBe("a#1") // passed but the branch not moved yet: still a's turn
    d = markMerged(d, entryKey("a", 1), c())
    expect(readPlan(d).git!.head).toBe(C1)
    expect(nextMerge(readPlan(d))!.job).toBe("c")
    d = startMerge(d, entryKey("c", 1), C1, c())
    d = recordMergeResult(d, entryKey("c", 1), { kind: "conflict", files: ["README.md"] }, c())
    const v = readPlan(d)
    expect(getJob(v, "c").status).toBe("conflict")
    expect(getJob(v, "c").current.reason).toBe("merge conflict in README.md")
    expect(nextMerge(v)!.job).toBe("b")
    // c retried: its old entry stays refused; the new attempt enters as a new entry once completed.
    d = retryJob(d, "c", c())
    expect(mergeCandidates(readPlan(d))).toEqual([])
    d = enqueueMerge(complete(d, "c"), "c", c())
    expect(readPlan(d).git!.queue.map(e => `${e.key}:${e.state}`)).toEqual(["c#1:conflict", "a#1:merged", "b#1:queued", "c#2:queued"])
  })

  it("refusals set the job conflict with a reason naming what failed", () => {
    let d = gitPlan([{ name: "t" }, { name: "u" }])
    for (const j of ["t", "u"]) d = startMerge(enqueueMerge(complete(d, j), j, c()), entryKey(j, 1), BASE, c())
    d = recordMergeResult(d, "t#1", { kind: "test_failed", commit: C2, output: "1 failing", exitCode: 1 }, c())
    d = recordMergeResult(d, "u#1", { kind: "touch_violation", files: ["Makefile"], touchSet: ["src/**"] }, c())
    const v = readPlan(d)
    expect(getJob(v, "t").current).toMatchObject({ failureKind: "test_failed", reason: "test failed (exit 1) on the combined result" })
    expect(v.git!.queue.find(e => e.job === "t")).toMatchObject({ state: "test_failed", output: "1 failing", commit: C2 })
    expect(getJob(v, "u").current).toMatchObject({ failureKind: "touch_violation", reason: "changed files outside its touchSet (src/**): Makefile" })
    expect(v.git!.head).toBe(BASE)
    expect(() => markMerged(d, "t#1", c())).toThrow(InvalidTransitionError)
    // A refused job cannot be skipped into merged; it can be retried or skipped.
    expect(getJob(readPlan(skipJob(d, "t", c())), "t").current.skipped).toBe(true)
  })

  it("concurrent writes of an entry's state resolve to the highest rank on every replica", () => {
    let d = gitPlan([{ name: "a" }])
    d = startMerge(enqueueMerge(complete(d, "a"), "a", c()), "a#1", BASE, c())
    const stale = fork(d)
    d = recordMergeResult(d, "a#1", { kind: "passed", commit: C1 }, c())
    // A replica that never saw "passed" writes the state again (a takeover race).
    const other = A.change(stale, x => {
      const s = x.git!.queueState as Record<string, unknown>
      delete s["a#1"]
      s["a#1"] = new A.ImmutableString("merging")
    })
    const m1 = A.merge(A.clone(d), other)
    const m2 = A.merge(A.clone(other), d)
    expect(readPlan(m1).git!.queue[0].state).toBe("passed")
    expect(readPlan(m2).git!.queue[0].state).toBe("passed")
  })
})
