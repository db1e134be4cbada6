/**
 * The runner's decisions with a fake job supervisor: no processes, a real store in a temp directory.
 * What is checked here is what the runner does with what it observes (one save per round, launch
 * failures, adoption after a restart, grace periods of the last jobs, interruption, the lease).
 */
import { afterAll, describe, expect, it } from "vitest"
import { acquireLease, readPlan, setJobStatus } from "../../src/doc/plan.js"
import { parsePlanSpec } from "../../src/doc/spec.js"
import { runPlan, type RunOptions } from "../../src/orchestrator/runner.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { cleanup, tempDir } from "../helpers/cli.js"
import { type Poll, until } from "../helpers/until.js"
import { FakeSupervisor } from "./fake-supervisor.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))
const me = { by: "test@h", now: Date.now() }

async function setup(yaml: string) {
  const dir = tempDir("concord-runner-")
  dirs.push(dir)
  const store = new PlanStore(dir)
  const { id } = await store.createPlan(parsePlanSpec(yaml), dir, { by: "test@h", now: Date.now() })
  return { store, id, dir }
}

const waitUntil = <T>(what: string, fn: Poll<T>, ms = 10_000) => until(what, fn, ms, 10)

const fast = (sup: FakeSupervisor, extra: RunOptions = {}): RunOptions => ({ supervisor: sup, tickMs: 20, killGraceMs: 50, ...extra })

describe("runner (fake supervisor)", () => {
  it("applies a round's actions to one document and saves once: 3 jobs from start to completed in at most 6 saves", async () => {
    const { store, id } = await setup(`name: p\njobs:\n  - { name: a, run: x }\n  - { name: b, run: x }\n  - { name: c, run: x }\n`)
    let saves = 0
    const update = store.updatePlan.bind(store)
    store.updatePlan = (async (i: string, fn: any) => {
      saves++
      return update(i, fn)
    }) as typeof store.updatePlan
    const sup = new FakeSupervisor()
    const run = runPlan(store, id, fast(sup))
    await waitUntil("3 spawned", () => sup.spawned.length === 3)
    for (const j of ["a", "b", "c"]) sup.exit(j, 1, 0)
    const r = await run
    expect(r.code).toBe(0)
    expect(r.view.jobs.map(j => j.status)).toEqual(["completed", "completed", "completed"])
    expect(r.view.jobs.every(j => j.current.pid !== null)).toBe(true)
    // lease, round 1 (start + 3 launches), round 2 (3 pids), round 3 (3 exits + plan completed), release
    expect(saves).toBeLessThanOrEqual(6)
  })

  it("a process that cannot be started fails as launch_failed (never lost) and pauses at on_error", async () => {
    const { store, id } = await setup(`name: p\njobs:\n  - { name: big, run: x }\n  - { name: ok, run: x }\n`)
    const sup = new FakeSupervisor()
    sup.failSpawn = s => (s.job === "big" ? "could not start the process: spawn E2BIG" : undefined)
    const run = runPlan(store, id, fast(sup))
    await waitUntil("ok spawned", () => sup.spawned.some(s => s.job === "ok"))
    sup.exit("ok", 1, 0)
    const r = await run
    expect(r.code).toBe(3)
    const big = r.view.jobs.find(j => j.name === "big")!
    expect([big.status, big.current.failureKind, big.current.reason]).toEqual(["failed", "launch_failed", "could not start the process: spawn E2BIG"])
    expect(r.view.checkpointContext).toMatchObject({ jobName: "big", failureKind: "launch_failed" })
  })

  it("a missing working directory fails the launch, naming the directory", async () => {
    const { store, id } = await setup(`name: p\njobs:\n  - { name: a, run: x, cwd: no/such/dir }\n`)
    const sup = new FakeSupervisor()
    const r = await runPlan(store, id, fast(sup))
    expect(r.code).toBe(3)
    expect(sup.spawned).toEqual([])
    expect(r.view.jobs[0].current).toMatchObject({ failureKind: "launch_failed" })
    expect(r.view.jobs[0].current.reason).toMatch(/working directory .*no\/such\/dir does not exist/)
  })

  it("restart: a live process of a completed job (found by what it left) is adopted and stopped when its grace period, counted from the report, ends", async () => {
    const { store, id } = await setup(`name: p\ngraceMs: 400\njobs:\n  - { name: a, run: x }\n  - { name: b, run: x }\n`)
    // A previous runner launched both and died; a completed, b still running.
    const t0 = Date.now()
    await store.updatePlan(id, d => setJobStatus(d, "a", "running", { host: "x", startedAt: t0 }, me))
    await store.updatePlan(id, d => setJobStatus(d, "b", "running", { startedAt: t0 }, me))
    await store.updatePlan(id, d => setJobStatus(d, "a", "completed", {}, { by: "job:a", now: t0 }))
    const sup = new FakeSupervisor()
    sup.discoverable.set("a#1", { pid: 77 })
    sup.discoverable.set("b#1", { pid: 78 })
    const events: string[] = []
    const run = runPlan(store, id, fast(sup, { onEvent: l => events.push(l) }))
    await waitUntil("a stopped", () => sup.stops.length > 0)
    expect(sup.stops[0]).toMatchObject({ job: "a", attempt: 1 })
    expect(sup.stops[0].at - t0).toBeGreaterThanOrEqual(400)
    expect(sup.spawned).toEqual([]) // nothing launched twice
    sup.exit("b", 1, 0)
    const r = await run
    expect(r.code).toBe(0)
    expect(events.filter(e => /adopted/.test(e))).toHaveLength(2)
  })

  it("an attempt recorded running with no pid yet is waited for while it may be starting, then started as the same attempt (its command never ran)", async () => {
    const { store, id } = await setup(`name: p\njobs:\n  - { name: a, run: x }\n`)
    await store.updatePlan(id, d => setJobStatus(d, "a", "running", { startedAt: Date.now() }, me))
    const sup = new FakeSupervisor() // leaves a log file behind, no pid file, no exit file
    const t = Date.now()
    const run = runPlan(store, id, fast(sup, { launchWindowMs: 300 }))
    await waitUntil("started again", () => sup.spawned.length === 1)
    expect(Date.now() - t).toBeGreaterThanOrEqual(250)
    expect(sup.spawned[0]).toMatchObject({ job: "a", attempt: 1 })
    sup.exit("a", 1, 0)
    const r = await run
    expect([r.code, r.view.jobs[0].status, r.view.jobs[0].attempt]).toEqual([0, "completed", 1])
  })

  it("an attempt whose pid file names a process that is gone without an exit file is lost (its command may have run)", async () => {
    const { store, id } = await setup(`name: p\njobs:\n  - { name: a, run: x }\n`)
    await store.updatePlan(id, d => setJobStatus(d, "a", "running", { startedAt: Date.now() }, me))
    const sup = new FakeSupervisor()
    sup.leftBehind.set("a#1", { pidFile: true })
    const r = await runPlan(store, id, fast(sup, { launchWindowMs: 60_000 }))
    expect([r.code, r.view.jobs[0].status, r.view.jobs[0].current.failureKind]).toEqual([3, "failed", "process_lost"])
    expect(sup.spawned).toEqual([])
  })

  it("an exit file that is empty or damaged is an unknown exit: failed, never completed", async () => {
    const { store, id } = await setup(`name: p\njobs:\n  - { name: a, run: x }\n  - { name: b, run: x, dependsOn: [a] }\n`)
    await store.updatePlan(id, d => setJobStatus(d, "a", "running", { startedAt: Date.now() }, me))
    const sup = new FakeSupervisor()
    sup.leftBehind.set("a#1", { exit: { code: null, signal: null, unknown: "its exit file is empty or damaged (exit code unknown)" }, pidFile: true })
    const r = await runPlan(store, id, fast(sup))
    expect([r.code, r.view.jobs[0].status, r.view.jobs[0].current.failureKind]).toEqual([3, "failed", "exit_unknown"])
    expect(r.view.jobs[0].current.reason).toMatch(/exit file is empty or damaged/)
    expect(sup.spawned).toEqual([])
  })

  it("the last job's grace period is honoured: the plan completes, its process is stopped only after graceMs", async () => {
    const { store, id } = await setup(`name: p\ngraceMs: 500\njobs:\n  - { name: a, run: x }\n`)
    const sup = new FakeSupervisor()
    const run = runPlan(store, id, fast(sup))
    await waitUntil("spawned", () => sup.spawned.length === 1)
    await waitUntil("pid recorded", async () => readPlan(await store.loadPlan(id)).jobs[0].current.pid !== null)
    const { doc } = await store.updatePlan(id, d => setJobStatus(d, "a", "completed", {}, { by: "job:a", now: Date.now() }))
    const reportedAt = readPlan(doc).jobs[0].current.statusAt
    const r = await run
    expect(r.code).toBe(0)
    expect(r.view.status).toBe("completed")
    expect(sup.stops).toHaveLength(1)
    expect(sup.stops[0].at - reportedAt).toBeGreaterThanOrEqual(500)
  })

  it("interrupted (signal aborted): returns 130 at once and stops nothing", async () => {
    const { store, id } = await setup(`name: p\ngraceMs: 10\njobs:\n  - { name: a, run: x }\n`)
    const sup = new FakeSupervisor()
    const ac = new AbortController()
    const run = runPlan(store, id, fast(sup, { signal: ac.signal }))
    await waitUntil("spawned", () => sup.spawned.length === 1)
    ac.abort()
    const r = await run
    expect(r.code).toBe(130)
    expect(r.why).toMatch(/keep running detached/)
    expect(sup.stops).toEqual([])
    expect(readPlan(await store.loadPlan(id)).lease).toBeNull()
  })

  it("a lease held by a live orchestrator on another machine is refused with exit code 1", async () => {
    const { store, id } = await setup(`name: p\njobs:\n  - { name: a, run: x }\n`)
    await store.updatePlan(id, d => acquireLease(d, { holder: "orchestrator@elsewhere:1", host: "elsewhere", pid: 1, ttlMs: 60_000 }, me))
    const err = await runPlan(store, id, fast(new FakeSupervisor())).catch(e => e)
    expect(err.exitCode).toBe(1)
    expect(err.message).toMatch(/already run by orchestrator@elsewhere:1/)
  })
})
