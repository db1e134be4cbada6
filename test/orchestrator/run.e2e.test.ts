/**
 * `concord run` end to end, with real job processes (shell scripts that sleep, exit with codes and call
 * `concord report`), real files and real signals.
 */
import type { ChildProcess } from "node:child_process"
import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { pidExists } from "../../src/orchestrator/proc.js"
import { cleanup, concord, createPlan, type RunResult, statusJson, tempDir } from "../helpers/cli.js"
import { peekStatus } from "../helpers/peek.js"
import { spawnConcord } from "../helpers/processes.mjs"
import { type Poll, until } from "../helpers/until.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))
function store(): string {
  const d = tempDir("concord-run-")
  dirs.push(d)
  return d
}

/** `concord run ARGS` as a child process (killed with the test process if it is still running). */
function startRun(dir: string, args: string[] = []): { child: ChildProcess; done: Promise<RunResult> } {
  return spawnConcord(dir, ["run", ...args], { timeoutMs: 600_000 })
}

const waitFor = <T>(what: string, fn: Poll<T>, ms = 20_000) => until(what, fn, ms)

const byName = (s: any) => Object.fromEntries(s.jobs.map((j: any) => [j.name, j]))

describe("concord run", () => {
  it("the founding-bug plan: A exits 1 while B and C report completed at the same moment, 20 of 20 runs", async () => {
    // One plan, created once; each run works on its own copy of that store. When the jobs act (AT) and
    // their jitter (JA, JB, JC) come from the run's environment, which concord run passes on to its jobs.
    const template = store()
    // (sleep until AT + jitter ms, in the shell: GNU date's milliseconds, no Node start-up per job)
    const wait = (j: string) => `d=$(($AT + $${j} - $(date +%s%3N))); if [ $d -gt 0 ]; then sleep $((d / 1000)).$(printf %03d $((d % 1000))); fi`
    const id = await createPlan(
      template,
      `name: founding
graceMs: 300
jobs:
  - { name: A, run: '${wait("JA")}; exit 1' }
  - { name: B, run: '${wait("JB")}; concord report completed "B done"; sleep 30' }
  - { name: C, run: '${wait("JC")}; concord report completed "C done"; sleep 30' }
`
    )
    const once = async () => {
      const dir = store()
      cpSync(template, dir, { recursive: true })
      // All three act at the same wall-clock moment (plus up to 40 ms of jitter), then B and C idle.
      const jitter = () => String(Math.floor(Math.random() * 40))
      const env = { AT: String(Date.now() + 1500), JA: jitter(), JB: jitter(), JC: jitter() }
      const r = await concord(dir, ["run", id], { env })
      expect(r.code, r.stdout + r.stderr).toBe(3)
      const s = await statusJson(dir, id)
      const j = byName(s)
      expect([j.A.status, j.B.status, j.C.status]).toEqual(["failed", "completed", "completed"])
      expect([s.status, s.checkpoint]).toEqual(["paused", "on_error"])
      expect(s.checkpointContext).toMatchObject({ jobName: "A", failureKind: "exit_code", exitCode: 1 })
      expect(r.stdout).toMatch(/concord approve \S+ --retry A/)
      return `${j.A.status}/${j.B.status}/${j.C.status}/${s.status}`
    }
    const outcomes: string[] = []
    for (let batch = 0; batch < 5; batch++) outcomes.push(...(await Promise.all([once(), once(), once(), once()])))
    expect(outcomes).toEqual(Array(20).fill("failed/completed/completed/paused"))
  }, 300_000)

  it("a diamond completes in dependency order with maxParallel respected (from recorded times)", async () => {
    const dir = store()
    const id = await createPlan(
      dir,
      `name: diamond
maxParallel: 2
jobs:
  - { name: top, run: "sleep 0.3" }
  - { name: l1, run: "sleep 0.4", dependsOn: [top] }
  - { name: l2, run: "sleep 0.4", dependsOn: [top] }
  - { name: l3, run: "sleep 0.4", dependsOn: [top] }
  - { name: bottom, run: "concord report completed", dependsOn: [l1, l2, l3] }
`
    )
    const r = await concord(dir, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    const s = await statusJson(dir, id)
    expect(s.status).toBe("completed")
    const j = byName(s)
    for (const job of s.jobs) for (const d of job.dependsOn) expect(j[d].endedAt).toBeLessThanOrEqual(job.startedAt)
    // At no moment were more than two jobs running.
    const edges = s.jobs.flatMap((x: any) => [
      [x.startedAt, 1],
      [x.endedAt ?? x.startedAt, -1],
    ])
    edges.sort((a: number[], b: number[]) => a[0] - b[0] || a[1] - b[1])
    let running = 0
    let peak = 0
    for (const [, d] of edges) peak = Math.max(peak, (running += d))
    expect(peak).toBe(2)
  }, 60_000)

  it("supervisor: stops at pre_merge and pre_pr; approvals from another process release each exactly once", async () => {
    const dir = store()
    const id = await createPlan(
      dir,
      `name: sup
mode: supervisor
jobs:
  - { name: a, run: "concord report completed" }
  - { name: b, run: "true", dependsOn: [a] }
`
    )
    const run = startRun(dir, [id, "--wait"])
    const approveAt = async (cp: string) => {
      await waitFor(`checkpoint ${cp}`, async () => {
        const s = await peekStatus(dir, id)
        return s.checkpoint === cp && !s.approvedBy
      })
      const r = await concord(dir, ["approve", id, "--checkpoint", cp])
      expect(r.code, r.stderr).toBe(0)
    }
    await approveAt("pre_merge")
    await approveAt("pre_merge")
    await approveAt("pre_pr")
    const r = await run.done
    expect(r.code, r.stdout + r.stderr).toBe(0)
    const s = await statusJson(dir, id)
    expect([s.status, s.jobs.map((x: any) => x.status)]).toEqual(["completed", ["merged", "merged"]])
    const h = JSON.parse((await concord(dir, ["history", id, "--json"])).stdout)
    const clears = h.filter((e: any) => /clear checkpoint/.test(e.did)).map((e: any) => e.did.replace(/ \(.*\)$/, ""))
    expect(clears).toEqual(["plan: clear checkpoint pre_merge #1", "plan: clear checkpoint pre_merge #2", "plan: clear checkpoint pre_pr #3"])
    expect(h.filter((e: any) => /^approve checkpoint/.test(e.did))).toHaveLength(3)
  }, 90_000)

  it("retry of the failed job completes the plan", async () => {
    const dir = store()
    const mark = path.join(dir, "fixed")
    const id = await createPlan(
      dir,
      `name: retry
jobs:
  - { name: flaky, run: 'if [ -f ${mark} ]; then echo fixed; else touch ${mark}; echo broken >&2; exit 7; fi' }
  - { name: after, run: "true", dependsOn: [flaky] }
`
    )
    const first = await concord(dir, ["run", id])
    expect(first.code).toBe(3)
    expect((await statusJson(dir, id)).checkpointContext).toMatchObject({ jobName: "flaky", exitCode: 7 })
    const log = (await statusJson(dir, id)).jobs[0].log
    expect(readFileSync(path.join(dir, log), "utf8")).toMatch(/broken/)
    expect((await concord(dir, ["approve", id, "--retry", "flaky"])).code).toBe(0)
    const second = await concord(dir, ["run", id])
    expect(second.code, second.stdout + second.stderr).toBe(0)
    const s = await statusJson(dir, id)
    expect([s.status, s.jobs[0].attempt, s.jobs[0].status, s.jobs[1].status]).toEqual(["completed", 2, "completed", "completed"])
    expect((await concord(dir, ["status", id])).stdout).toMatch(/flaky#2: exit 0 · exited 0 without reporting completed · log .*flaky\.2\.log/)
  }, 60_000)

  it("cancel from another process stops all job processes; run exits 1", async () => {
    const dir = store()
    const id = await createPlan(dir, `name: cancel\njobs:\n  - { name: a, run: "sleep 60" }\n  - { name: b, run: "sleep 60" }\n`)
    const run = startRun(dir, [id, "--wait"])
    const pids = await waitFor("both running", async () => {
      const s = await peekStatus(dir, id)
      return s.jobs.every((j: any) => j.status === "running" && j.pid) && s.jobs.map((j: any) => j.pid)
    })
    const c = await concord(dir, ["cancel", id])
    expect(c.code, c.stderr).toBe(0)
    const r = await run.done
    expect(r.code).toBe(1)
    await waitFor("processes gone", () => pids.every((p: number) => !pidExists(p)), 10_000)
    const s = await statusJson(dir, id)
    expect([s.status, ...s.jobs.map((j: any) => j.status)]).toEqual(["canceled", "canceled", "canceled"])
  }, 60_000)

  it("two orchestrators started at once: exactly one runs the plan", async () => {
    const dir = store()
    const launches = path.join(dir, "launches")
    const id = await createPlan(
      dir,
      `name: two\njobs:\n  - { name: a, run: "echo a >> ${launches}; sleep 1" }\n  - { name: b, run: "echo b >> ${launches}; sleep 1" }\n`
    )
    const [r1, r2] = await Promise.all([concord(dir, ["run", id]), concord(dir, ["run", id])])
    const codes = [r1.code, r2.code].sort()
    expect(codes).toEqual([0, 1])
    const loser = r1.code === 1 ? r1 : r2
    expect(loser.stderr).toMatch(/already being run by orchestrator@\S+:\d+/)
    expect(readFileSync(launches, "utf8").trim().split("\n").sort()).toEqual(["a", "b"])
  }, 60_000)

  it("crash: SIGKILL the orchestrator mid-plan, restart: nothing launched twice, completions kept, lost processes failed", async () => {
    const dir = store()
    const launches = path.join(dir, "launches")
    const go = path.join(dir, "go")
    const id = await createPlan(
      dir,
      `name: crash
graceMs: 200
maxParallel: 4
jobs:
  - { name: done-while-down, run: 'echo $CONCORD_JOB >> ${launches}; while [ ! -f ${go} ]; do sleep 0.1; done; concord report completed "finished while the orchestrator was down"; sleep 30' }
  - { name: survives, run: 'echo $CONCORD_JOB >> ${launches}; while [ ! -f ${go} ]; do sleep 0.1; done; sleep 8; exit 0' }
  - { name: exits-while-down, run: 'echo $CONCORD_JOB >> ${launches}; while [ ! -f ${go} ]; do sleep 0.1; done; exit 0' }
  - { name: dies, run: 'echo $CONCORD_JOB >> ${launches}; sleep 60' }
  - { name: later, run: 'echo $CONCORD_JOB >> ${launches}', dependsOn: [survives] }
`
    )
    const first = startRun(dir, [id])
    const pids = await waitFor("three running", async () => {
      const s = await peekStatus(dir, id)
      const running = s.jobs.filter((j: any) => j.status === "running" && j.pid)
      return running.length === 4 && byName(s)
    })
    first.child.kill("SIGKILL")
    await first.done
    // While it is down: one job's process dies, one completes, one keeps running.
    process.kill(-pids.dies.pid, "SIGKILL")
    writeFileSync(go, "")
    await waitFor("report while down", async () => byName(await peekStatus(dir, id))["done-while-down"].status === "completed")
    const second = await concord(dir, ["run", id])
    expect(second.code, second.stdout + second.stderr).toBe(3)
    expect(second.stdout).toMatch(/survives #1: adopted running process/)
    const s = await statusJson(dir, id)
    const j = byName(s)
    expect(j["done-while-down"].status).toBe("completed")
    expect([j.dies.status, j.dies.error]).toEqual(["failed", "process lost"])
    expect([j.survives.status, j.survives.exitCode]).toEqual(["completed", 0])
    expect([j["exits-while-down"].status, j["exits-while-down"].exitCode]).toEqual(["completed", 0])
    expect([s.status, s.checkpoint, s.checkpointContext.jobName, s.checkpointContext.failureKind]).toEqual(["paused", "on_error", "dies", "process_lost"])
    // "later" depended on "survives" but the plan is paused: it has not started; nothing ran twice.
    expect(readFileSync(launches, "utf8").trim().split("\n").sort()).toEqual(["dies", "done-while-down", "exits-while-down", "survives"])
    expect(existsSync(launches)).toBe(true)
  }, 90_000)

  it("a job without output or reports for staleMs is flagged stale, not failed", async () => {
    const dir = store()
    const id = await createPlan(dir, `name: stale\nstaleMs: 1000\njobs:\n  - { name: quiet, run: "sleep 6" }\n`)
    const run = startRun(dir, [id])
    // both views while the job still runs (on a loaded machine a status call takes a while: ask the human
    // view right after the JSON one shows it, in the same try)
    await waitFor("stale", async () => {
      const j = (await peekStatus(dir, id)).jobs[0]
      return j.status === "running" && j.stale && /running \(stale\)/.test((await concord(dir, ["status", id])).stdout)
    })
    expect((await run.done).code).toBe(0)
  }, 60_000)
})
