/**
 * The orchestrator under faults, with real job processes, real files and real signals (issue 14):
 * a runner killed during a launch or a grace period, jobs that ignore SIGTERM, an empty exit file,
 * the last jobs' grace periods, a damaged lock, a job's own PATH, Ctrl-C, huge prompts and spawn
 * errors, a refused lease, and a plan whose directory does not exist on this machine.
 * Each test failed on the code before the fix. Short grace periods keep them fast.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdirSync, readFileSync, renameSync, truncateSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { acquireLease, readPlan, setJobStatus } from "../../src/doc/plan.js"
import { hostName } from "../../src/lib/host.js"
import { jobEnv } from "../../src/orchestrator/policy.js"
import { isSameProcessAlive, processStartTicks } from "../../src/orchestrator/proc.js"
import { runPlan, type RunOptions } from "../../src/orchestrator/runner.js"
import { jobFiles, liveMembers, logPath, ProcessSupervisor, stopJobProcess } from "../../src/orchestrator/supervisor.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { cleanup, concord, createPlan, ROOT, type RunResult, statusJson, tempDir } from "../helpers/cli.js"
import { peekStatus } from "../helpers/peek.js"
import { spawnConcord } from "../helpers/processes.mjs"
import { type Poll, until } from "../helpers/until.js"

const dirs: string[] = []
const groups: number[] = []
afterAll(() => {
  for (const g of groups) {
    try {
      process.kill(-g, "SIGKILL")
    } catch {
      // gone
    }
  }
  dirs.forEach(cleanup)
})
function store(): string {
  const d = tempDir("concord-faults-")
  dirs.push(d)
  return d
}

const binDir = path.join(ROOT, "bin")
const fast: RunOptions = { binDir, tickMs: 50, killGraceMs: 300 }
const byName = (s: any) => Object.fromEntries(s.jobs.map((j: any) => [j.name, j]))

const waitFor = <T>(what: string, fn: Poll<T>, ms = 90_000) => until(what, fn, ms)

/** `concord run ARGS` as a child process (killed with the test process if it is still running). */
function startRun(dir: string, args: string[] = [], cwd = dir): { child: ChildProcess; done: Promise<RunResult> } {
  return spawnConcord(dir, ["run", ...args], { cwd, timeoutMs: 600_000 })
}

const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : [])

/** What a runner records before it starts job a's first attempt: running, on this machine, no pid yet. */
async function recordRunning(s: PlanStore, id: string): Promise<void> {
  await s.updatePlan(id, d =>
    setJobStatus(d, "a", "running", { host: hostName(), startedAt: Date.now(), log: logPath(id, "a", 1) }, { by: "orchestrator@x:1", now: Date.now() })
  )
}

/** The environment a runner gives job a's first attempt. */
const jobAEnv = (dir: string, id: string) =>
  jobEnv({ base: process.env, env: {}, binDir, prompt: null, vars: { CONCORD_STORE: dir, CONCORD_PLAN: id, CONCORD_JOB: "a", CONCORD_ATTEMPT: "1" } })

describe("orchestrator faults (real processes)", () => {
  it("1. runner killed between recording `running` and recording the pid: the next runner adopts the live job by its pid file; nothing runs twice", async () => {
    const dir = store()
    const launches = path.join(dir, "launches")
    const go = path.join(dir, "go")
    const cmd = `echo a >> ${launches}; while [ ! -f ${go} ]; do sleep 0.1; done; exit 0`
    const id = await createPlan(dir, `name: f1\njobs:\n  - { name: a, run: '${cmd}' }\n  - { name: b, run: 'echo b >> ${launches}', dependsOn: [a] }\n`)
    const s = new PlanStore(dir)
    // What a runner does up to its death: record the attempt running, spawn the wrapper; no pid written.
    await recordRunning(s, id)
    const dead = new ProcessSupervisor({ storeDir: dir, planId: id, host: hostName(), killGraceMs: 300 })
    const spawned = await dead.spawn({ job: "a", attempt: 1, run: cmd, cwd: dir, env: jobAEnv(dir, id), prompt: "" })
    expect(spawned.ok).toBe(true)
    if (spawned.ok) groups.push(spawned.pid)
    expect(readPlan(await s.loadPlan(id)).jobs[0].current.pid).toBeNull()

    const events: string[] = []
    // The job finishes only once the new runner has adopted it.
    const onEvent = (l: string) => {
      events.push(l)
      if (/a #1: adopted running process/.test(l)) writeFileSync(go, "")
    }
    const r = await runPlan(s, id, { ...fast, onEvent })
    expect(r.code, events.join("\n")).toBe(0)
    expect(events.join("\n")).toMatch(/a #1: adopted running process/)
    const a = r.view.jobs[0]
    expect([a.status, a.current.exitCode, a.current.pid]).toEqual(["completed", 0, spawned.ok ? spawned.pid : -1])
    expect(lines(launches).sort()).toEqual(["a", "b"])
  }, 180_000)

  it("1a. runner killed between recording `running` and starting the process: the next runner starts it, as the same attempt, at once; it runs once", async () => {
    const dir = store()
    const launches = path.join(dir, "launches")
    const id = await createPlan(
      dir,
      `name: f1a\njobs:\n  - { name: a, run: 'echo a >> ${launches}' }\n  - { name: b, run: 'echo b >> ${launches}', dependsOn: [a] }\n`
    )
    const s = new PlanStore(dir)
    // What a runner does up to its death: record the attempt running; nothing spawned, no log file.
    await recordRunning(s, id)
    const events: string[] = []
    const t0 = Date.now()
    // a launch window far longer than the test: the attempt is not waited out, it is started at once
    const r = await runPlan(s, id, { ...fast, launchWindowMs: 600_000, onEvent: l => events.push(l) })
    expect(r.code, events.join("\n")).toBe(0)
    expect(Date.now() - t0).toBeLessThan(60_000)
    expect(events.join("\n")).toMatch(/a #1: recorded running but never started .*: starting it now/)
    expect(r.view.jobs.map(j => [j.name, j.status, j.attempt])).toEqual([
      ["a", "completed", 1],
      ["b", "completed", 1],
    ])
    expect(lines(launches)).toEqual(["a", "b"])
  }, 120_000)

  it("1c. a wrapper that cannot write its pid file does not run the job's command (exit 125): no pid file always means the command never ran", async () => {
    const dir = store()
    const ran = path.join(dir, "ran")
    const id = await createPlan(dir, `name: f1c\njobs:\n  - { name: a, run: 'touch ${ran}' }\n`)
    const sup = new ProcessSupervisor({ storeDir: dir, planId: id, host: hostName(), killGraceMs: 300 })
    const files = jobFiles(dir, id, "a", 1)
    mkdirSync(`${files.pid}.tmp`, { recursive: true }) // the wrapper's temp pid file cannot be written
    const spawned = await sup.spawn({ job: "a", attempt: 1, run: `touch ${ran}`, cwd: dir, env: jobAEnv(dir, id), prompt: "" })
    expect(spawned.ok).toBe(true)
    if (spawned.ok) groups.push(spawned.pid)
    const exit = await waitFor("the wrapper's exit", () => sup.poll().exits.find(e => e.job === "a"))
    expect(exit.code).toBe(125)
    expect(existsSync(ran)).toBe(false)
    expect(existsSync(files.pid)).toBe(false)
    expect(readFileSync(files.log, "utf8")).toMatch(/could not write .*\.pid; the job was not started/)
    sup.close()
  }, 60_000)

  it("1b. SIGKILL `concord run` at random moments while it launches, 4 times: every job runs exactly once, none is called lost", async () => {
    const dir = store()
    const launches = path.join(dir, "launches")
    const job = (n: string) => `{ name: ${n}, run: 'echo ${n} >> ${launches}; sleep 1' }`
    const id = await createPlan(dir, `name: f1b\nmaxParallel: 1\njobs:\n  - ${job("a")}\n  - ${job("b")}\n  - ${job("c")}\n  - ${job("d")}\n`)
    for (let i = 0; i < 4; i++) {
      const run = startRun(dir, [id])
      await new Promise(r => setTimeout(r, 600 + Math.floor(Math.random() * 900)))
      run.child.kill("SIGKILL")
      await run.done
    }
    const last = await concord(dir, ["run", id])
    expect(last.code, last.stdout + last.stderr).toBe(0)
    const s = await statusJson(dir, id)
    expect(s.jobs.map((j: any) => [j.name, j.status, j.attempt])).toEqual([
      ["a", "completed", 1],
      ["b", "completed", 1],
      ["c", "completed", 1],
      ["d", "completed", 1],
    ])
    expect(lines(launches).sort()).toEqual(["a", "b", "c", "d"])
  }, 240_000)

  it("2. a job that ignores SIGTERM is SIGKILLed, whole process group, although the /bin/sh leader exits first", async () => {
    const dir = store()
    const pids = path.join(dir, "pids")
    const id = await createPlan(
      dir,
      `name: f2\ngraceMs: 100\njobs:\n  - { name: stubborn, run: "trap '' TERM; sleep 60 & echo $! > ${pids}; concord report completed; wait" }\n`
    )
    const s = new PlanStore(dir)
    const events: string[] = []
    const t0 = Date.now()
    const r = await runPlan(s, id, { ...fast, onEvent: l => events.push(l) })
    expect(r.code, events.join("\n")).toBe(0)
    const job = r.view.jobs[0]
    groups.push(job.current.pid!)
    expect(liveMembers({ pid: job.current.pid! })).toEqual([])
    const sleeper = Number(readFileSync(pids, "utf8"))
    expect(isSameProcessAlive(sleeper, null)).toBe(false)
    expect(events.join("\n")).toMatch(/still alive after SIGTERM; sent SIGKILL/)
    expect(Date.now() - t0).toBeLessThan(55_000) // before the 60 s sleeper would have ended by itself
  }, 180_000)

  it("2b. the shared stop routine (used by cancel): SIGTERM, then SIGKILL until the group is gone; other hosts are left alone", async () => {
    const child = spawn("/bin/sh", ["-c", "trap '' TERM; sleep 60 & sleep 60 & wait"], { detached: true, stdio: "ignore" })
    groups.push(child.pid!)
    await waitFor("group started", () => liveMembers({ pid: child.pid! }).length >= 3)
    expect(await stopJobProcess({ pid: child.pid!, host: "elsewhere" }, { host: hostName(), graceMs: 100 })).toBe("other_host")
    const signals: string[] = []
    const t0 = Date.now()
    expect(await stopJobProcess({ pid: child.pid! }, { host: hostName(), graceMs: 200, onSignal: s => signals.push(s) })).toBe("gone")
    expect(signals[0]).toBe("SIGTERM")
    expect(signals).toContain("SIGKILL")
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200)
    expect(liveMembers({ pid: child.pid! })).toEqual([])
    expect(await stopJobProcess({ pid: child.pid! }, { host: hostName(), graceMs: 100 })).toBe("not_found")
  }, 90_000)

  it("2d. the stop routine never signals a group whose leader's pid now belongs to another process (pid reused)", async () => {
    const other = spawn("/bin/sh", ["-c", "sleep 60 & wait"], { detached: true, stdio: "ignore" })
    groups.push(other.pid!)
    await waitFor("group started", () => liveMembers({ pid: other.pid! }).length >= 2)
    const ticks = processStartTicks(other.pid!)!
    // what a plan recorded for an earlier process that had this pid: another start time
    const signals: string[] = []
    expect(await stopJobProcess({ pid: other.pid!, startTicks: ticks - 1 }, { host: hostName(), graceMs: 100, onSignal: s => signals.push(s) })).toBe(
      "not_found"
    )
    expect(
      await stopJobProcess({ pid: other.pid!, startedAtMs: Date.now() - 3_600_000 }, { host: hostName(), graceMs: 100, onSignal: s => signals.push(s) })
    ).toBe("not_found")
    expect(signals).toEqual([])
    expect(isSameProcessAlive(other.pid!, null)).toBe(true)
    expect(await stopJobProcess({ pid: other.pid!, startTicks: ticks }, { host: hostName(), graceMs: 100 })).toBe("gone")
  }, 90_000)

  it("2c. `concord cancel` with no orchestrator running stops a SIGTERM-ignoring job's whole group", async () => {
    const dir = store()
    const id = await createPlan(dir, `name: f2c\njobs:\n  - { name: stubborn, run: "trap '' TERM; sleep 60 & wait" }\n`)
    const run = startRun(dir, [id])
    const pid = await waitFor("running with pid", async () => (await peekStatus(dir, id)).jobs[0].pid)
    groups.push(pid)
    await waitFor("members", () => liveMembers({ pid }).length >= 2)
    run.child.kill("SIGKILL")
    await run.done
    const c = await concord(dir, ["cancel", id])
    expect(c.code, c.stderr).toBe(0)
    expect(c.stdout).toMatch(/1 job process on .* signaled to stop/)
    expect(liveMembers({ pid })).toEqual([])
  }, 180_000)

  it("3. runner killed during a completed job's grace period: the restarted runner adopts the idle process and stops it when the grace, counted from the report, ends", async () => {
    const dir = store()
    const termed = path.join(dir, "termed")
    const id = await createPlan(
      dir,
      `name: f3
graceMs: 1500
jobs:
  - { name: idle, run: "trap 'date +%s%3N > ${termed}; exit 0' TERM; concord report completed; while :; do sleep 0.1; done" }
  - { name: slow, run: "sleep 4" }
`
    )
    const first = startRun(dir, [id])
    const reported = await waitFor("idle reported completed", async () => {
      const j = byName(await peekStatus(dir, id)).idle
      return j.status === "completed" && j.pid && j
    })
    first.child.kill("SIGKILL")
    await first.done
    groups.push(reported.pid)
    const r = await runPlan(new PlanStore(dir), id, fast)
    expect(r.code).toBe(0)
    const idle = r.view.jobs.find(j => j.name === "idle")!
    expect(liveMembers({ pid: reported.pid })).toEqual([])
    const termAt = Number(readFileSync(termed, "utf8"))
    expect(termAt - idle.current.statusAt).toBeGreaterThanOrEqual(1500 - 50)
  }, 180_000)

  it("4. an empty exit file (disk full) is an unknown exit: the job fails, its dependents never run", async () => {
    const dir = store()
    const ran = path.join(dir, "ran")
    const go = path.join(dir, "go")
    const id = await createPlan(
      dir,
      `name: f4\njobs:\n  - { name: a, run: "while [ ! -f ${go} ]; do sleep 0.1; done; exit 3" }\n  - { name: b, run: "touch ${ran}", dependsOn: [a] }\n`
    )
    const first = startRun(dir, [id])
    const pid = await waitFor("a running with pid", async () => (await peekStatus(dir, id)).jobs[0].pid)
    first.child.kill("SIGKILL")
    await first.done
    writeFileSync(go, "")
    const exitFile = jobFiles(dir, id, "a", 1).exit
    await waitFor("exit file", () => existsSync(exitFile) && liveMembers({ pid }).length === 0)
    expect(readFileSync(exitFile, "utf8")).toBe("3\n")
    truncateSync(exitFile, 0)
    const r = await concord(dir, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    const s = await statusJson(dir, id)
    expect([s.jobs[0].status, s.jobs[1].status]).toEqual(["failed", "waiting_deps"])
    expect(s.checkpointContext).toMatchObject({ jobName: "a", failureKind: "exit_unknown" })
    expect(s.jobs[0].error).toMatch(/exit file is empty or damaged/)
    expect(existsSync(ran)).toBe(false)
  }, 180_000)

  it("5. the last job's graceMs is honoured before its process is stopped", async () => {
    const dir = store()
    const termed = path.join(dir, "termed")
    const id = await createPlan(
      dir,
      `name: f5\ngraceMs: 1500\njobs:\n  - { name: last, run: "trap 'date +%s%3N > ${termed}; exit 0' TERM; concord report completed; while :; do sleep 0.1; done" }\n`
    )
    const r = await runPlan(new PlanStore(dir), id, fast)
    expect(r.code).toBe(0)
    expect(r.view.status).toBe("completed")
    const termAt = Number(readFileSync(termed, "utf8"))
    expect(termAt - r.view.jobs[0].current.statusAt).toBeGreaterThanOrEqual(1500 - 50)
  }, 180_000)

  it("6. an empty lock file is taken over when no live orchestrator holds the plan; refused with advice when one might", async () => {
    const dir = store()
    const id = await createPlan(dir, `name: f6\njobs:\n  - { name: a, run: "true" }\n`)
    mkdirSync(path.join(dir, "locks"), { recursive: true })
    const lock = path.join(dir, "locks", `${id}.lock`)
    writeFileSync(lock, "")
    const ok = await concord(dir, ["run", id])
    expect(ok.code, ok.stdout + ok.stderr).toBe(0)
    expect(ok.stdout + ok.stderr).toMatch(/lock file .* was damaged .* taking it over/)
    expect(existsSync(lock)).toBe(false)

    const id2 = await createPlan(dir, `name: f6b\njobs:\n  - { name: a, run: "true" }\n`)
    const s = new PlanStore(dir)
    await s.updatePlan(id2, d =>
      acquireLease(d, { holder: "orchestrator@elsewhere:9", host: "elsewhere", pid: 9, ttlMs: 60_000 }, { by: "x", now: Date.now() })
    )
    const lock2 = path.join(dir, "locks", `${id2}.lock`)
    writeFileSync(lock2, '{"holder":"orchestr')
    const refused = await concord(dir, ["run", id2])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/lock file .* is damaged .*orchestrator@elsewhere:9 .*holds the plan's lease.*delete/)
  }, 180_000)

  it("7. a job's own env PATH is kept, with concord's bin dir in front", async () => {
    const dir = store()
    const out = path.join(dir, "path")
    const id = await createPlan(
      dir,
      `name: f7\njobs:\n  - { name: a, run: 'echo "$PATH" > ${out}; concord report completed', env: { PATH: "/custom/bin:/usr/bin:/bin" } }\n`
    )
    const r = await concord(dir, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(readFileSync(out, "utf8").trim()).toBe(`${binDir}:/custom/bin:/usr/bin:/bin`)
  }, 180_000)

  it("9. Ctrl-C on `concord run`: exits 130, says the jobs keep running detached; the next run adopts them and nothing runs twice", async () => {
    const dir = store()
    const launches = path.join(dir, "launches")
    const go = path.join(dir, "go")
    const job = (n: string) => `{ name: ${n}, run: 'echo ${n} >> ${launches}; while [ ! -f ${go} ]; do sleep 0.1; done' }`
    const id = await createPlan(dir, `name: f9\njobs:\n  - ${job("a")}\n  - ${job("b")}\n`)
    const run = startRun(dir, [id])
    const pids = await waitFor("both running", async () => {
      const s = await peekStatus(dir, id)
      return s.jobs.every((j: any) => j.status === "running" && j.pid) && s.jobs.map((j: any) => j.pid)
    })
    pids.forEach((p: number) => groups.push(p))
    run.child.kill("SIGINT")
    const r = await run.done
    expect(r.code, r.stdout + r.stderr).toBe(130)
    expect(r.stdout).toMatch(/Interrupted\. 2 running jobs keep running detached/)
    expect(r.stdout).toMatch(/next `concord run \S+` adopts them/)
    expect(r.stdout).not.toMatch(/Waiting at checkpoint/)
    for (const p of pids) expect(liveMembers({ pid: p }).length).toBeGreaterThan(0)
    const again = startRun(dir, [id])
    await waitFor("adopted", async () => (await peekStatus(dir, id)).lease)
    writeFileSync(go, "")
    const r2 = await again.done
    expect(r2.code, r2.stdout + r2.stderr).toBe(0)
    expect(r2.stdout.match(/adopted running process/g)).toHaveLength(2)
    expect(lines(launches).sort()).toEqual(["a", "b"])
  }, 180_000)

  it("10. a 200 KB prompt is passed in $CONCORD_PROMPT_FILE; a spawn error (E2BIG) is recorded as launch_failed, not lost", async () => {
    const dir = store()
    const out = path.join(dir, "n")
    const prompt = "p".repeat(200_000)
    const big = "e".repeat(200_000)
    const id = await createPlan(
      dir,
      `name: f10
jobs:
  - { name: prompted, run: 'wc -c < "$CONCORD_PROMPT_FILE" > ${out}; test -z "$CONCORD_PROMPT"', prompt: "${prompt}" }
  - { name: small, run: 'test "$CONCORD_PROMPT" = hi && test "$(cat "$CONCORD_PROMPT_FILE")" = hi', prompt: hi }
  - { name: huge-env, run: "true", env: { BIG: "${big}" } }
`
    )
    const r = await concord(dir, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    const s = byName(await statusJson(dir, id))
    expect([s.prompted.status, s.small.status]).toEqual(["completed", "completed"])
    expect(Number(readFileSync(out, "utf8"))).toBe(200_000)
    expect(s["huge-env"].status).toBe("failed")
    expect(s["huge-env"].error).toMatch(/could not start the process: .*E2BIG/)
    expect((await statusJson(dir, id)).checkpointContext).toMatchObject({ jobName: "huge-env", failureKind: "launch_failed" })
    // The next run does not call it lost.
    const again = await concord(dir, ["run", id])
    expect(again.code).toBe(3)
    expect((await statusJson(dir, id)).checkpointContext).toMatchObject({ failureKind: "launch_failed" })
  }, 180_000)

  it("12. a refused lease exits 1; a relative cwd of a plan made elsewhere resolves against where `concord run` starts", async () => {
    const dir = store()
    const id = await createPlan(dir, `name: f12\njobs:\n  - { name: a, run: "true" }\n`)
    const s = new PlanStore(dir)
    await s.updatePlan(id, d => acquireLease(d, { holder: "orchestrator@elsewhere:9", host: "elsewhere", pid: 9, ttlMs: 60_000 }, { by: "x", now: Date.now() }))
    const refused = await concord(dir, ["run", id])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/already run by orchestrator@elsewhere:9/)

    // The plan file's directory exists only on "the other machine": moved away after plan create.
    const other = store()
    const planDir = path.join(other, "machine-a")
    mkdirSync(path.join(planDir, "svc"), { recursive: true })
    writeFileSync(path.join(planDir, "p.yaml"), `name: f12b\njobs:\n  - { name: a, run: 'pwd > where', cwd: svc }\n`)
    const created = await concord(dir, ["plan", "create", path.join(planDir, "p.yaml"), "--json"])
    expect(created.code, created.stderr).toBe(0)
    const id2 = JSON.parse(created.stdout).id
    const runDir = path.join(other, "machine-b")
    renameSync(planDir, runDir)
    const r = await concord(dir, ["run", id2], { cwd: runDir })
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(readFileSync(path.join(runDir, "svc", "where"), "utf8").trim()).toBe(path.join(runDir, "svc"))
  }, 180_000)
})
