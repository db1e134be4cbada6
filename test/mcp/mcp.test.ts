/**
 * `concord mcp` driven by the MCP SDK's own Client over stdio, as a real child process: every tool, its
 * effect in the store and in `concord status`, and the refusals (tool errors with the CLI's message and
 * nothing written). The server gets only the SDK's minimal environment: its identity comes from flags.
 */
import { spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { existsSync, mkdirSync, readFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { isSameProcessAlive } from "../../src/orchestrator/proc.js"
import { parsePlanSpec } from "../../src/doc/spec.js"
import { setJobStatus } from "../../src/doc/plan.js"
import { LocalBackend } from "../../src/ops/local.js"
import { createPlan as createPlanOp } from "../../src/ops/plans.js"
import { status as statusOp } from "../../src/ops/status.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { concord, createPlan, ROOT, statusJson, tempDir } from "../helpers/cli.js"
import { type Poll, until } from "../helpers/until.js"
import { addTokenCli, spawnConcord, startServerProcess } from "../sync/net/helpers.js"
import { job, type Mcp, mcpFixtures, storeFiles, text } from "./client.js"

const { dirs, mcp } = mcpFixtures()
const store = () => {
  const d = tempDir("concord-mcp-")
  dirs.push(d)
  return d
}
/** The message `concord ARGS` prints on stderr, without the `concord: ` prefix. */
const cliError = async (dir: string, args: string[]) => {
  const r = await concord(dir, args)
  expect(r.code).not.toBe(0)
  return r.stderr.trim().replace(/^concord: /, "")
}
const waitUntil = <T>(what: string, fn: Poll<T>, ms = 300_000) => until(what, fn, ms, 100)

/** A node process whose stdout lines can be awaited. */
function lineProcess(args: string[]) {
  const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] })
  const seen: string[] = []
  const waiters: { prefix: string; resolve: (l: string) => void }[] = []
  createInterface({ input: child.stdout! }).on("line", l => {
    seen.push(l)
    for (const w of [...waiters]) if (l.startsWith(w.prefix)) waiters.splice(waiters.indexOf(w), 1), w.resolve(l)
  })
  afterAll(() => void child.kill("SIGKILL"))
  return {
    child,
    next: (prefix: string) => new Promise<string>(resolve => waiters.push({ prefix, resolve })),
  }
}

const TOOLS = [
  "mc_capture",
  "mc_cleanup",
  "mc_diff",
  "mc_jobs",
  "mc_kill",
  "mc_merge",
  "mc_overview",
  "mc_plan",
  "mc_plan_approve",
  "mc_plan_cancel",
  "mc_plan_status",
  "mc_pr",
  "mc_report",
  "mc_status",
  "mc_sync",
]

describe("concord mcp", () => {
  it("lists every tool with a description, an input schema and an output schema", async () => {
    const c = await mcp(["--store", store()])
    const { tools } = await c.client.listTools({}, { timeout: 600_000 })
    expect(tools.map(t => t.name).sort()).toEqual(TOOLS)
    for (const t of tools) {
      expect(t.description!.length, t.name).toBeGreaterThan(20)
      expect(t.inputSchema.type).toBe("object")
      expect(t.outputSchema?.type, t.name).toBe("object")
    }
    const report = tools.find(t => t.name === "mc_report")!
    expect(report.inputSchema.required).toEqual(["status", "message"])
    expect((report.inputSchema.properties as any).status.enum).toEqual(["working", "progress", "blocked", "needs_review", "completed", "failed"])
    expect((report.inputSchema.properties as any).progress).toMatchObject({ minimum: 0, maximum: 100 })
    const info = c.client.getServerVersion()
    expect(info?.name).toBe("concord")
  }, 900_000)

  it("a planning session creates, approves, reads and cancels a plan; a job's server reports; both show in the store and in concord status", async () => {
    const dir = store()
    const project = path.join(dir, "project")
    mkdirSync(project)
    const planner = await mcp(["--store", dir, "--agent", "echo default-agent"], { cwd: project })
    const created = await planner.call("mc_plan", {
      name: "mcp-e2e",
      mode: "copilot",
      jobs: [
        { name: "a", prompt: "do a" },
        { name: "b", prompt: "do b", dependsOn: ["a"], run: "true" },
        { name: "c", prompt: "do c" },
      ],
    })
    expect(created.isError, text(created)).toBeFalsy()
    const id = created.structuredContent.id as string
    expect(created.structuredContent.jobs.map((j: any) => j.run)).toEqual(["echo default-agent", "true", "echo default-agent"])
    expect(text(created)).toContain(`concord run ${id}`)
    let s = await statusJson(dir, id)
    expect([s.name, s.status, s.checkpoint, s.jobs.length]).toEqual(["mcp-e2e", "pending", "approval", 3])

    const approved = await planner.call("mc_plan_approve", { plan: id })
    expect(approved.isError, text(approved)).toBeFalsy()
    expect(approved.structuredContent.approved.checkpoint).toBe("approval")
    expect((await statusJson(dir, id)).approvedBy).toBe(approved.structuredContent.approved.by)

    // A job's server: store, plan and job from flags; misleading CONCORD_* variables are ignored.
    const agent = await mcp(["--store", dir, "--plan", id, "--job", "a", "--attempt", "1"], {
      env: { CONCORD_STORE: path.join(dir, "elsewhere"), CONCORD_JOB: "c", CONCORD_PLAN: "nope" },
    })
    const progress = await agent.call("mc_report", { status: "progress", message: "halfway", progress: 40 })
    expect(progress.isError, text(progress)).toBeFalsy()
    expect(progress.structuredContent).toMatchObject({ planId: id, job: "a", attempt: 1, status: "progress", progress: 40, changed: false })
    s = await statusJson(dir, id)
    expect(job(s, "a")).toMatchObject({ progress: 40, lastReport: { status: "progress", message: "halfway", progress: 40 } })
    expect(job(s, "a").lastReport.by).toMatch(/^job:a#1@/)
    expect(job(s, "c").lastReport).toBeNull()
    expect(existsSync(path.join(dir, "elsewhere"))).toBe(false)

    const done = await agent.call("mc_report", { status: "completed", message: "all green" })
    expect(done.structuredContent).toMatchObject({ jobStatus: "completed", changed: true })
    expect(job(await statusJson(dir, id), "a").status).toBe("completed")
    expect((await concord(dir, ["status", id])).stdout).toMatch(/a\s+completed/)

    const st = await agent.call("mc_status", { name: "a" })
    expect(st.structuredContent.job).toMatchObject({ name: "a", status: "completed", attempt: 1 })
    expect(st.structuredContent.plan.id).toBe(id)
    const jobs = await agent.call("mc_jobs", { status: "completed" })
    expect(jobs.structuredContent.jobs.map((j: any) => j.name)).toEqual(["a"])
    const all = await agent.call("mc_jobs", {})
    expect(all.structuredContent.jobs.map((j: any) => j.name)).toEqual(["a", "b", "c"])
    const ps = await agent.call("mc_plan_status", {})
    expect(ps.structuredContent).toMatchObject({ id, name: "mcp-e2e", counts: { completed: 1, queued: 2 } })
    const ov = await planner.call("mc_overview")
    expect(ov.structuredContent.plans.map((p: any) => p.id)).toEqual([id])
    expect(ov.structuredContent.current.id).toBe(id)

    // mc_kill on a job that never started cancels it
    const killed = await planner.call("mc_kill", { name: "c", plan: id })
    expect(killed.structuredContent).toMatchObject({ job: "c", from: "queued", status: "canceled", changed: true, signaled: 0 })
    expect(job(await statusJson(dir, id), "c").status).toBe("canceled")

    const canceled = await planner.call("mc_plan_cancel", { plan: "mcp-e2e" })
    expect(canceled.structuredContent).toMatchObject({ planId: id, canceled: ["b"] })
    s = await statusJson(dir, id)
    expect([s.status, job(s, "a").status, job(s, "b").status]).toEqual(["canceled", "completed", "canceled"])
    // every write names who made it
    const history = await concord(dir, ["history", id, "--json"])
    const entries = JSON.parse(history.stdout) as { by: string; did: string }[]
    expect(entries.some(e => /^job:a#1@/.test(e.by) && /completed/.test(e.did))).toBe(true)
  }, 900_000)

  it("mc_capture tails a running job's log (escapes shown, not raw); mc_kill stops it, and force kills one that ignores SIGTERM", async () => {
    const dir = store()
    const id = await createPlan(
      dir,
      `name: capture
maxParallel: 3
jobs:
  - name: loop
    run: 'i=0; while true; do i=$((i+1)); echo "line $i"; sleep 0.05; done'
  - name: stubborn
    run: 'trap "" TERM; echo stubborn; while true; do sleep 0.1; done'
  - name: esc
    run: 'printf "red \\033[31mX\\033[0m\\n"; sleep 60'
`
    )
    const run = spawnConcord(dir, ["run", id], { timeoutMs: 600_000 })
    try {
      const c = await mcp(["--store", dir, "--plan", id])
      await waitUntil("three running jobs with output", async () => {
        const s = await statusJson(dir, id)
        return (
          s.jobs.every((j: any) => j.status === "running" && j.pid) &&
          s.jobs.every((j: any) => existsSync(path.join(dir, j.log)) && readFileSync(path.join(dir, j.log), "utf8").includes("\n")) &&
          readFileSync(path.join(dir, job(s, "loop").log), "utf8").split("\n").length > 5
        )
      })
      const cap = await c.call("mc_capture", { name: "loop", lines: 3 })
      expect(cap.isError, text(cap)).toBeFalsy()
      const lines = cap.structuredContent.lines as string[]
      expect(lines).toHaveLength(3)
      const ns = lines.map(l => Number(/^line (\d+)$/.exec(l)![1]))
      expect(ns).toEqual([ns[0], ns[0] + 1, ns[0] + 2])
      expect(cap.structuredContent.truncated).toBe(true)

      const esc = await c.call("mc_capture", { name: "esc" })
      expect(esc.structuredContent.lines).toEqual(["red \x1b[31mX\x1b[0m"])
      expect(text(esc)).toContain("red \\x1b[31mX\\x1b[0m")
      expect(text(esc)).not.toContain("\x1b")

      const st = await c.call("mc_status", { name: "loop" })
      expect(st.structuredContent.recentOutput.length).toBeGreaterThan(0)

      const s0 = await statusJson(dir, id)
      const loopPid = job(s0, "loop").pid as number
      const stubbornPid = job(s0, "stubborn").pid as number
      const k = await c.call("mc_kill", { name: "loop" })
      expect(k.structuredContent).toMatchObject({ from: "running", status: "stopped", changed: true })
      // the running orchestrator stops the process too when it sees `stopped`: whichever signals first
      expect([0, 1], JSON.stringify(k.structuredContent)).toContain(k.structuredContent.signaled)
      expect(job(await statusJson(dir, id), "loop")).toMatchObject({ status: "stopped" })
      await waitUntil("loop's process gone", () => !isSameProcessAlive(loopPid, null))

      const f = await c.call("mc_kill", { name: "stubborn", force: true })
      expect(
        f.structuredContent,
        JSON.stringify({ f: f.structuredContent, status: job(await statusJson(dir, id), "stubborn"), alive: isSameProcessAlive(stubbornPid, null) })
      ).toMatchObject({ from: "running", status: "stopped", signaled: 1 })
      await waitUntil("stubborn's process gone", () => !isSameProcessAlive(stubbornPid, null))
      // killing it again changes nothing
      const again = await c.call("mc_kill", { name: "stubborn" })
      expect(again.structuredContent).toMatchObject({ status: "stopped", changed: false, signaled: 0 })
      expect(text(again)).toContain("already stopped")
    } finally {
      run.child.kill("SIGTERM")
      await run.done
      await concord(dir, ["cancel", id])
    }
  }, 900_000)

  it("refusals are tool errors with the CLI's message, and nothing is written", async () => {
    const dir = store()
    const id = await createPlan(dir, `name: refusals\njobs:\n  - { name: a, run: "true" }\n  - { name: b, run: "true", dependsOn: [a] }\n`)
    const agent = await mcp(["--store", dir, "--plan", id, "--job", "a"])
    const stranger = await mcp(["--store", dir, "--plan", id, "--job", "zzz"])
    const planner = await mcp(["--store", dir, "--plan", id])
    await agent.call("mc_plan_status") // let digests and caches settle before the snapshot
    const before = storeFiles(dir)

    const cases: [Mcp, string, Record<string, unknown>, string | RegExp][] = [
      [agent, "mc_report", { status: "done", message: "x" }, await cliError(dir, ["report", "done", "x", "--job", "a", "--plan", id])],
      [
        agent,
        "mc_report",
        { status: "progress", message: "x", progress: 150 },
        await cliError(dir, ["report", "progress", "x", "--progress", "150", "--job", "a", "--plan", id]),
      ],
      [
        agent,
        "mc_report",
        { status: "progress", message: "x", progress: -1 },
        await cliError(dir, ["report", "progress", "x", "--progress", "-1", "--job", "a", "--plan", id]),
      ],
      [
        agent,
        "mc_report",
        { status: "working", message: "x".repeat(4001) },
        await cliError(dir, ["report", "working", "x".repeat(4001), "--job", "a", "--plan", id]),
      ],
      [stranger, "mc_report", { status: "working", message: "hi" }, await cliError(dir, ["report", "working", "hi", "--job", "zzz", "--plan", id])],
      [planner, "mc_report", { status: "completed", message: "done" }, /started for no job.*concord mcp --plan PLAN --job JOB/],
      [planner, "mc_status", { name: "zzz" }, `plan "refusals" has no job "zzz" (jobs: a, b)`],
      [planner, "mc_kill", { name: "zzz" }, `plan "refusals" has no job "zzz" (jobs: a, b)`],
      [planner, "mc_capture", { name: "a" }, `job "a" attempt 1 has no log: it has not started (status queued)`],
      [planner, "mc_capture", { name: "a", lines: -5 }, /invalid lines -5/],
      [planner, "mc_plan_status", { plan: "nope" }, await cliError(dir, ["status", "nope"])],
      // what the caller sent comes back escaped, never raw (a NUL, a terminal title sequence)
      [planner, "mc_plan_cancel", { plan: "\u0000\u001b]0;x\u0007" }, /^no plan "\\x00\\x1b\]0;x\\x07" in store /],
      [planner, "mc_plan_approve", { retry: "zzz" }, await cliError(dir, ["approve", id, "--retry", "zzz"])],
      [planner, "mc_plan_approve", {}, await cliError(dir, ["approve", id])],
      [
        planner,
        "mc_plan",
        {
          name: "bad",
          jobs: [
            { name: "x", prompt: "p", dependsOn: ["y"] },
            { name: "y", prompt: "p", dependsOn: ["x"] },
          ],
        },
        "dependency cycle: x -> y -> x",
      ],
      [
        planner,
        "mc_plan",
        { name: "bad", jobs: [{ name: "x", prompt: "p", run: "true", dependson: ["y"] }] },
        /unknown key "dependson" \(did you mean "dependsOn"\?\)/,
      ],
    ]
    for (const [c, tool, args, message] of cases) {
      const r = await c.call(tool, args)
      expect(r.isError, `${tool} ${JSON.stringify(args).slice(0, 80)} -> ${text(r)}`).toBe(true)
      if (typeof message === "string") expect(text(r)).toBe(message)
      else expect(text(r)).toMatch(message)
      expect(text(r)).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/)
    }
    expect(storeFiles(dir)).toEqual(before)
    expect((await statusJson(dir, id)).jobs.map((j: any) => [j.status, j.lastReport])).toEqual([
      ["queued", null],
      ["queued", null],
    ])
  }, 900_000)

  it("through a sync server: a reader token reads but its report is refused with nothing written; logs are not on the server", async () => {
    const dir = store()
    const serverStore = path.join(dir, "server")
    const id = await createPlan(dir, `name: remote\njobs:\n  - { name: A, run: "true" }\n`)
    const admin = await addTokenCli(serverStore, "*", "admin")
    const server = await startServerProcess(serverStore)
    try {
      const pushed = await concord(dir, ["sync", server.url, "--token", admin])
      expect(pushed.code, pushed.stderr).toBe(0)
      const reader = await addTokenCli(serverStore, id, "reader")
      const writer = await addTokenCli(serverStore, id, "job:A")
      const ro = await mcp(["--remote", server.url, "--token", reader, "--plan", id, "--job", "A"])
      const ps = await ro.call("mc_plan_status")
      expect(ps.isError, text(ps)).toBeFalsy()
      expect(ps.structuredContent.id).toBe(id)
      const before = storeFiles(serverStore)
      const refused = await ro.call("mc_report", { status: "completed", message: "done" })
      expect(refused.isError).toBe(true)
      const cli = await concord(dir, ["report", "completed", "done", "--job", "A", "--plan", id, "--remote", server.url, "--token", reader])
      expect(cli.code).not.toBe(0)
      expect(`concord: ${text(refused)}`).toBe(cli.stderr.trim().split("\n").pop())
      const cap = await ro.call("mc_capture", { name: "A" })
      expect(cap.isError).toBe(true)
      expect(text(cap)).toMatch(/job logs stay on the machine that ran the job/)
      expect(storeFiles(serverStore)).toEqual(before)

      // a job token for A may report for A; the server's agent rules (issue 13) let an agent move its job
      // only from running, so for a job no orchestrator started the report is stored and the status stays
      const rw = await mcp(["--remote", server.url, "--token", writer, "--plan", id, "--job", "A"])
      const okr = await rw.call("mc_report", { status: "completed", message: "done remotely" })
      expect(okr.isError, text(okr)).toBeFalsy()
      const s = await statusJson(serverStore, id)
      expect(job(s, "A")).toMatchObject({ status: "queued", lastReport: { message: "done remotely" } })
    } finally {
      await server.stop()
    }
  }, 900_000)
})

describe("the founding race through MCP servers", () => {
  it("20 of 20 rounds: two agents report completed through their MCP servers while the orchestrator fails a third job from a stale view", async () => {
    const dir = store()
    const orchestrator = lineProcess([path.join(ROOT, "test/fixtures/stale-orchestrator.mjs"), dir])
    await orchestrator.next("ready")
    // Long-lived servers, one per agent, for every round: each round's plan is the store's newest.
    const agents = { B: await mcp(["--store", dir, "--job", "B"]), C: await mcp(["--store", dir, "--job", "C"]) }
    const backend = new LocalBackend(new PlanStore(dir, { onWarning: () => {} }))
    const spec = parsePlanSpec(`name: race\njobs:\n  - { name: A, run: "exit 1" }\n  - { name: B, run: "true" }\n  - { name: C, run: "true" }\n`)
    const by = () => ({ by: "orchestrator@test", now: Date.now() })
    const outcomes: string[] = []
    const ROUNDS = Number(process.env.RACE_ROUNDS ?? 20)
    for (let round = 0; round < ROUNDS; round++) {
      const t0 = Date.now()
      const { id } = await createPlanOp(backend, spec, dir, by)
      await backend.updatePlan(id, d => ["A", "B", "C"].reduce((doc, j) => setJobStatus(doc, j, "running", { startedAt: Date.now() }, by()), d))
      // The orchestrator (a real process) reads the plan, then writes A failed and the pause 0-150 ms
      // later from that stale view, while both agents report completed through their MCP servers.
      const saved = orchestrator.next(`saved ${id}`)
      const loadedLine = orchestrator.next(`loaded ${id}`)
      orchestrator.child.stdin!.write(`${id} A ${Math.floor(Math.random() * 150)}\n`)
      expect(await loadedLine).toBe(`loaded ${id} running,running,running`)
      const t1 = Date.now()
      const reports = (["B", "C"] as const).map(async j => {
        await new Promise(r => setTimeout(r, Math.floor(Math.random() * 40)))
        return agents[j].call("mc_report", { status: "completed", message: `${j} done` })
      })
      const [, ...rs] = await Promise.all([saved, ...reports])
      for (const r of rs) expect(r.isError, text(r)).toBeFalsy()
      for (const r of rs) expect(r.structuredContent.planId).toBe(id)
      const s = (await statusOp(backend, id)).summary
      const js = Object.fromEntries(s.jobs.map(j => [j.name, j.status]))
      outcomes.push(`${js.A}/${js.B}/${js.C}/${s.status}/${s.checkpoint}`)
      if (process.env.RACE_ROUNDS) console.log(`round ${round}: setup+orchestrator load ${t1 - t0} ms, reports+status ${Date.now() - t1} ms`)
    }
    orchestrator.child.stdin!.end()
    expect(outcomes).toEqual(Array(ROUNDS).fill("failed/completed/completed/paused/on_error"))
    // and the CLI agrees on the last round
    const last = await statusJson(dir)
    expect(last.counts).toEqual({ failed: 1, completed: 2 })
  }, 900_000)
})
