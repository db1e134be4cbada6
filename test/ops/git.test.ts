/**
 * src/ops/git.ts on plan documents in a real store: requestMerge (mc_merge / concord merge) never merges,
 * it approves a job's pre_merge and says where the job stands in the merge queue; sync and cleanup refuse
 * what would move a branch the queue owns or pull a worktree from under a live process. The git effects
 * over MCP are in test/mcp/git-tools.test.ts.
 */
import * as A from "@automerge/automerge"
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import type { PlanUpdate } from "../../src/ops/backend.js"
import type { WriteContext } from "../../src/doc/actor.js"
import { enqueueMerge, entryKey, markMerged, recordGitBase, recordMergeResult, startMerge } from "../../src/doc/merge.js"
import { acquireLease, approveCheckpoint, clearCheckpoint, raiseCheckpoint, readPlan, setJobStatus, setPlanStatus, updateAttempt } from "../../src/doc/plan.js"
import { validatePlanSpec } from "../../src/doc/spec.js"
import { cleanup, requestMerge, syncJob } from "../../src/ops/git.js"
import { LocalBackend } from "../../src/ops/local.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { makeRepo } from "../orchestrator/worktree/gitrepo.js"

let t = 1_800_000_000_000
const clock = (): WriteContext => ({ by: "tester@host:1", now: ++t })
const roots: string[] = []
afterAll(() => roots.forEach(r => rmSync(r, { recursive: true, force: true })))

async function plan(mode: "autopilot" | "supervisor") {
  const dir = mkdtempSync(path.join(os.tmpdir(), "concord-opsgit-"))
  roots.push(dir)
  makeRepo(dir)
  const store = new PlanStore(path.join(dir, "store"), { onWarning: () => {} })
  const spec = validatePlanSpec({
    name: "q",
    mode,
    repo: dir,
    jobs: [
      { name: "a", run: "true" },
      { name: "b", run: "true" },
      { name: "c", run: "true", dependsOn: ["a"] },
      { name: "r", run: "true" },
    ],
  })
  const { id } = await store.createPlan(spec, dir, clock())
  const backend = new LocalBackend(store)
  const update = (fn: Parameters<PlanStore["updatePlan"]>[1]) => store.updatePlan(id, fn)
  await update(d => setPlanStatus(recordGitBase(d, { baseBranch: "main", baseCommit: "1".repeat(40) }, clock()), "running", clock()))
  for (const j of ["a", "b", "c"]) {
    await update(d => setJobStatus(d, j, "running", { attempt: 1 }, clock()))
    await update(d => setJobStatus(d, j, "completed", { attempt: 1 }, clock()))
  }
  await update(d => setJobStatus(d, "r", "running", { attempt: 1 }, clock()))
  const heads = async () => A.getHeads(await store.loadPlan(id)).join()
  return { store, backend, id, update, heads }
}

describe("git operations decided on the plan document (mc_merge, mc_sync, mc_cleanup)", () => {
  it("autopilot: place in the queue, waiting for dependencies, merged, refused; nothing written", async () => {
    const p = await plan("autopilot")
    await p.update(d => enqueueMerge(d, "a", clock()))
    await p.update(d => enqueueMerge(d, "b", clock()))
    const before = await p.heads()
    const b = await requestMerge(p.backend, { planRef: p.id, job: "b" }, clock)
    expect(b).toMatchObject({ state: "queued", queue: { state: "queued", position: 2, ahead: ["a"] }, approved: null })
    expect(b.text).toContain("number 2 in the merge queue, after a")
    const c = await requestMerge(p.backend, { planRef: p.id, job: "c" }, clock)
    expect(c).toMatchObject({ state: "waiting", waitingFor: ["a"], queue: null })
    expect(c.text).toContain("once its dependencies are merged: a (ready_to_merge)")
    await expect(requestMerge(p.backend, { planRef: p.id, job: "r" }, clock)).rejects.toThrow(
      /job "r" is running, not completed: it enters the merge queue when it has completed/
    )
    await expect(requestMerge(p.backend, { planRef: p.id, job: "zz" }, clock)).rejects.toThrow(/plan "q" has no job "zz" \(jobs: a, b, c, r\)/)
    expect(await p.heads()).toBe(before)

    await p.update(d => startMerge(d, entryKey("a", 1), "1".repeat(40), clock()))
    expect(await requestMerge(p.backend, { planRef: p.id, job: "a" }, clock)).toMatchObject({ state: "merging", queue: { position: 1 } })
    await p.update(d => recordMergeResult(d, entryKey("a", 1), { kind: "passed", commit: "2".repeat(40) }, clock()))
    await p.update(d => markMerged(d, entryKey("a", 1), clock()))
    expect(await requestMerge(p.backend, { planRef: p.id, job: "a" }, clock)).toMatchObject({
      state: "merged",
      queue: { commit: "2".repeat(40), position: null },
    })
    // b moved up; c now may enter (its dependency merged): the orchestrator's next round puts it in.
    expect(await requestMerge(p.backend, { planRef: p.id, job: "b" }, clock)).toMatchObject({ queue: { position: 1, ahead: [] } })
    expect(await requestMerge(p.backend, { planRef: p.id, job: "c" }, clock)).toMatchObject({ state: "queued", queue: null, waitingFor: [] })

    await p.update(d => startMerge(d, entryKey("b", 1), "2".repeat(40), clock()))
    await p.update(d => recordMergeResult(d, entryKey("b", 1), { kind: "touch_violation", files: ["Makefile"], touchSet: ["src/**"] }, clock()))
    const refused = requestMerge(p.backend, { planRef: p.id, job: "b" }, clock)
    await expect(refused).rejects.toThrow(
      /job "b" attempt 1 was refused by the merge queue \(changed files outside its touchSet \(src\/\*\*\): Makefile\): retry it/
    )
    await expect(refused).rejects.toMatchObject({ exitCode: 2, code: "merge_refused" })
  })

  it("supervisor: approves the pre_merge the plan waits at for that job, and only that one", async () => {
    const p = await plan("supervisor")
    await p.update(d => raiseCheckpoint(d, "pre_merge", { jobName: "b", attempt: 1 }, clock(), { job: "b", attempt: 1 }))
    const before = await p.heads()
    const a = await requestMerge(p.backend, { planRef: p.id, job: "a" }, clock)
    expect(a).toMatchObject({ state: "waiting", approved: null })
    expect(a.text).toContain("the plan waits at pre_merge for b first")
    expect(await p.heads()).toBe(before)
    const b = await requestMerge(p.backend, { planRef: p.id, job: "b" }, clock)
    expect(b).toMatchObject({ state: "approved", approved: { checkpoint: "pre_merge", by: "tester@host:1" } })
    expect(b.text).toMatch(/^approved pre_merge #1 for b: b #1 enters the merge queue at the orchestrator's next round/)
    expect(await p.heads()).not.toBe(before)
    // Asked again: the approval exists, nothing new is written.
    const after = await p.heads()
    const again = await requestMerge(p.backend, { planRef: p.id, job: "b" }, clock)
    expect(again).toMatchObject({ state: "approved", approved: null })
    expect(again.text).toMatch(/^pre_merge for b was approved by tester@host:1: b #1 enters the merge queue/)
    expect(await p.heads()).toBe(after)
  })

  it("sync never moves a branch the merge queue owns or is about to take; nothing written", async () => {
    const p = await plan("autopilot")
    for (const j of ["a", "b"]) await p.update(d => updateAttempt(d, j, 1, { worktree: path.join(os.tmpdir(), `wt-${j}`), branch: `concord/q--${j}` }, clock()))
    await p.update(d => enqueueMerge(d, "b", clock()))
    // A live orchestrator (its lease) would enqueue a at its next round.
    const now = Date.now()
    await p.update(d =>
      acquireLease(d, { holder: "orchestrator@elsewhere:9", host: "elsewhere", pid: 9, ttlMs: 60_000 }, { by: "orchestrator@elsewhere:9", now })
    )
    const before = await p.heads()
    const wall = () => ({ by: "tester@host:1", now: Date.now() })
    await expect(syncJob(p.backend, { planRef: p.id, job: "a" }, wall)).rejects.toThrow(
      /job "a" attempt 1 is completed and about to enter the merge queue \(orchestrator@elsewhere:9 runs the plan\)/
    )
    await expect(syncJob(p.backend, { planRef: p.id, job: "b" }, wall)).rejects.toThrow(
      /job "b" attempt 1 is ready_to_merge: not synced \(its branch is in the merge queue now and must not move\)/
    )
    await expect(syncJob(p.backend, { planRef: p.id, job: "r" }, wall)).rejects.toThrow(/job "r" attempt 1 has no worktree \(it is running/)
    await expect(syncJob(p.backend, { planRef: p.id, job: "a", strategy: "squash" as never }, wall)).rejects.toThrow(
      /invalid strategy "squash": expected rebase or merge/
    )
    expect(await p.heads()).toBe(before)
  })

  it("supervisor: a pre_merge raised for another job between reading and writing is not approved by mistake", async () => {
    const p = await plan("supervisor")
    await p.update(d => raiseCheckpoint(d, "pre_merge", { jobName: "b", attempt: 1 }, clock(), { job: "b", attempt: 1 }))
    // Another process (a human and the orchestrator) writes between mc_merge's read and its write:
    // b's pre_merge is approved and cleared, and a's raised.
    class Interleaved extends LocalBackend {
      first = true
      override async updatePlan<R = void>(id: Parameters<LocalBackend["updatePlan"]>[0], fn: PlanUpdate<R>) {
        if (this.first) {
          this.first = false
          await p.update(d =>
            raiseCheckpoint(clearCheckpoint(approveCheckpoint(d, { id: "other" }, clock()).doc, clock()), "pre_merge", { jobName: "a", attempt: 1 }, clock(), {
              job: "a",
              attempt: 1,
            })
          )
        }
        return super.updatePlan(id, fn)
      }
    }
    const r = await requestMerge(new Interleaved(p.store), { planRef: p.id, job: "b" }, clock)
    expect(r.approved).toBeNull()
    const v = readPlan(await p.store.loadPlan(p.id))
    expect(v.checkpoint).toBe("pre_merge")
    expect(v.checkpointContext?.jobName).toBe("a")
    expect(v.approvals.filter(x => x.checkpoint === "pre_merge").map(x => x.job)).toEqual(["b"]) // a's is still waiting
  })

  it("cleanup of one job keeps a worktree whose process is still alive (a stopped job ignoring SIGTERM), then removes it", async () => {
    const p = await plan("autopilot")
    const wt = path.join(p.store.dir, "worktrees", p.id, "r.1")
    mkdirSync(wt, { recursive: true })
    const sleeper = spawn("sleep", ["60"], { stdio: "ignore" })
    try {
      await p.update(d => updateAttempt(d, "r", 1, { worktree: wt, pid: sleeper.pid! }, clock()))
      await p.update(d => setJobStatus(d, "r", "stopped", { attempt: 1 }, clock()))
      const before = await p.heads()
      await expect(cleanup(p.backend, { planRef: p.id, job: "r" })).rejects.toThrow(
        new RegExp(`job "r": nothing to clean up: .*r\\.1 is in use \\(attempt 1's process ${sleeper.pid} is still alive\\)`)
      )
      expect(existsSync(wt)).toBe(true)
      expect(await p.heads()).toBe(before)
    } finally {
      sleeper.kill("SIGKILL")
      await new Promise(r => sleeper.once("exit", r))
    }
    const r = await cleanup(p.backend, { planRef: p.id, job: "r" })
    expect(r.removed).toEqual([wt])
    expect(existsSync(wt)).toBe(false)
  })
})
