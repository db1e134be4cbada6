/**
 * The plan operations (src/ops) as a conformance suite: every scenario runs against both backends, the
 * local store and a real sync server over a real socket, so "written once" also means "behaves the same".
 */
import * as A from "@automerge/automerge"
import { mkdtempSync, rmSync, unlinkSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { WriteContext } from "../../src/doc/actor.js"
import { acquireLease, raiseCheckpoint, readPlan, retryJob, setJobStatus, updateAttempt } from "../../src/doc/plan.js"
import { hostName } from "../../src/lib/host.js"
import type { PlanBackend } from "../../src/ops/backend.js"
import { approve, cancel, createPlan, history, LocalBackend, listPlans, RemoteBackend, report, resolvePlan, status, watchStatus } from "../../src/ops/index.js"
import { SyncServer } from "../../src/sync/net/server.js"
import { addToken, defaultTokensFile } from "../../src/sync/net/tokens.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { spec } from "../doc/helpers.js"

let t = 1_800_000_000_000
const clock =
  (by = "tester@host:1") =>
  (): WriteContext => ({ by, now: ++t })

const roots: string[] = []
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), "concord-ops-"))
  roots.push(d)
  return d
}

let server: SyncServer
let serverUrl = ""
let adminToken = ""
const opened: PlanBackend[] = []

beforeAll(async () => {
  const dir = path.join(tmp(), "server")
  adminToken = (await addToken(defaultTokensFile(dir), { plans: ["*"], role: "admin", label: "ops test" })).secret
  server = new SyncServer({ storeDir: dir, port: 0, host: "127.0.0.1", log: () => {} })
  serverUrl = (await server.start()).url
})

afterAll(async () => {
  for (const b of opened) await b.close()
  await server?.close()
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

const backends: [string, () => Promise<PlanBackend>][] = [
  ["local store", async () => new LocalBackend(new PlanStore(path.join(tmp(), "store"), { onWarning: () => {} }))],
  [
    "sync server",
    async () => {
      const b = await RemoteBackend.open({ url: serverUrl, token: adminToken }, { timeoutMs: 20_000 })
      opened.push(b)
      return b
    },
  ],
]

/** Count of changes in the plan and its logs: equal before and after = nothing written. */
async function changeCount(b: PlanBackend, id: string): Promise<number> {
  return (await history(b, { planRef: id })).entries.length
}

describe.each(backends)("plan operations over the %s", (_name, open) => {
  it("report: progress is stored, completed and failed move the attempt, bad input writes nothing", async () => {
    const b = await open()
    const plan = await createPlan(b, spec([{ name: "A" }, { name: "B" }, { name: "C" }], { name: `rep-${_name}` }), "/tmp", clock())
    await b.updatePlan(plan.id, d => setJobStatus(d, "A", "running", { attempt: 1 }, clock("orch")()))
    const p = await report(b, { planRef: plan.id, job: "A", status: "progress", message: "half", progress: 50 }, clock("agent"))
    expect(p).toMatchObject({ job: "A", attempt: 1, progress: 50, changed: false, jobStatus: "running" })
    const c = await report(b, { planRef: plan.id, job: "A", status: "completed", message: "done" }, clock("agent"))
    expect(c).toMatchObject({ changed: true, jobStatus: "completed", text: "reported completed for A #1; job A #1 is now completed" })
    const f = await report(b, { planRef: plan.id, job: "B", status: "failed", message: "tests fail" }, clock("agent"))
    expect(f.jobStatus).toBe("failed")
    // failed after completed: stored, but the status does not move backwards
    const late = await report(b, { planRef: plan.id, job: "A", status: "failed", message: "late" }, clock("agent"))
    expect(late).toMatchObject({ changed: false, jobStatus: "completed" })
    expect(late.note).toMatch(/stays completed/)

    const s = (await status(b, plan.id)).summary
    expect(Object.fromEntries(s.jobs.map(j => [j.name, j.status]))).toEqual({ A: "completed", B: "failed", C: "queued" })
    expect(s.jobs.find(j => j.name === "B")!.error).toBe("tests fail")
    expect(s.jobs.find(j => j.name === "A")!.lastReport?.message).toBe("late")

    const before = await changeCount(b, plan.id)
    const bad: [Parameters<typeof report>[1], RegExp][] = [
      [{ planRef: plan.id, job: "A", status: "done" }, /invalid report status "done"/],
      [{ planRef: plan.id, job: "A", status: "progress", progress: 101 }, /invalid progress 101/],
      [{ planRef: plan.id, job: "A", status: "progress", progress: Number.NaN }, /invalid progress/],
      [{ planRef: plan.id, job: "Z", status: "working" }, /Z/],
      [{ planRef: plan.id, job: "A", status: "working", attempt: 7 }, /no attempt 7/],
      [{ planRef: plan.id, job: "A", status: "working", attempt: 0 }, /invalid attempt 0/],
      [{ planRef: plan.id, job: "A", status: "working", message: "x".repeat(4001) }, /4001 characters; the limit is 4000/],
      [{ planRef: "no-such-plan", job: "A", status: "working" }, /no plan "no-such-plan"/],
    ]
    for (const [input, msg] of bad) await expect(report(b, input, clock())).rejects.toThrow(msg)
    expect(await changeCount(b, plan.id)).toBe(before)
    // 4000 characters that are 8000 UTF-16 units are within the limit
    await report(b, { planRef: plan.id, job: "C", status: "working", message: "😀".repeat(4000) }, clock("agent"))
  })

  it("approve: refuses with nothing to approve; retry at on_error approves and starts attempt 2; a finished plan is refused", async () => {
    const b = await open()
    const plan = await createPlan(b, spec([{ name: "A" }, { name: "B" }], { name: `appr-${_name}` }), "/tmp", clock())
    await expect(approve(b, { planRef: plan.id }, clock())).rejects.toThrow(/not waiting at a checkpoint: nothing to approve/)
    await b.updatePlan(plan.id, d => {
      let x = setJobStatus(d, "A", "running", { attempt: 1 }, clock("orch")())
      x = setJobStatus(x, "A", "failed", { attempt: 1, reason: "exit 1" }, clock("orch")())
      return raiseCheckpoint(x, "on_error", { jobName: "A", attempt: 1 }, clock("orch")(), { job: "A", attempt: 1 })
    })
    await expect(approve(b, { planRef: plan.id, checkpoint: "pre_pr" }, clock())).rejects.toThrow(/waiting at checkpoint on_error, not pre_pr/)
    const r = await approve(b, { planRef: plan.id, retry: "A" }, clock("alice@laptop"))
    expect(r.retried).toEqual({ job: "A", attempt: 2 })
    expect(r.approved).toMatchObject({ checkpoint: "on_error", by: "alice@laptop" })
    expect(r.orchestrator).toBeNull()
    const s = await status(b, plan.id)
    expect(s.summary.approvedBy).toBe("alice@laptop")
    expect(s.next).toEqual([])
    // the new attempt has no report yet: the old attempt's report is not shown as its news
    expect(s.summary.jobs.find(j => j.name === "A")).toMatchObject({ attempt: 2, status: "queued", lastReport: null })

    const c = await cancel(b, { planRef: plan.id }, clock())
    expect(c.canceled.sort()).toEqual(["A", "B"])
    const after = await status(b, plan.id)
    expect(after.summary).toMatchObject({ status: "canceled", checkpoint: null })
    expect(after.next).toEqual([])
    const n = await changeCount(b, plan.id)
    await expect(approve(b, { planRef: plan.id, retry: "A" }, clock())).rejects.toThrow(/is canceled: a finished plan cannot be approved, retried or skipped/)
    expect(await changeCount(b, plan.id)).toBe(n)
  })

  it("resolve: id, url, name, unique prefix; an ambiguous name or prefix is refused naming the plans", async () => {
    const b = await open()
    const name = `same-${_name}-${Date.now()}`
    const p1 = await createPlan(b, spec([{ name: "A" }], { name }), "/tmp", clock())
    expect((await resolvePlan(b, p1.id)).id).toBe(p1.id)
    expect((await resolvePlan(b, `automerge:${p1.id}`)).id).toBe(p1.id)
    expect((await resolvePlan(b, name)).id).toBe(p1.id)
    const p2 = await createPlan(b, spec([{ name: "A" }], { name }), "/tmp", clock())
    expect(p2.sameName).toEqual([p1.id])
    await expect(resolvePlan(b, name)).rejects.toThrow(new RegExp(`2 plans are named "${name}".*${p1.id}.*${p2.id}`))
    const all = await b.listPlans()
    // find a prefix shared by two plans, and one unique to p1
    const shared = all.filter(x => x.id[0] === p1.id[0])
    if (shared.length > 1) await expect(resolvePlan(b, p1.id[0])).rejects.toThrow(/plans have ids starting with/)
    expect((await resolvePlan(b, p1.id.slice(0, 12))).id).toBe(p1.id)
    expect((await resolvePlan(b)).id).toBe(all[all.length - 1].id)
  })

  it("watchStatus: sees a report written through another backend", async () => {
    const b = await open()
    const plan = await createPlan(b, spec([{ name: "A" }], { name: `watch-${_name}` }), "/tmp", clock())
    const other = await open()
    const ac = new AbortController()
    const seen: string[] = []
    const watching = watchStatus(b, plan.id, s => seen.push(s.summary.jobs[0].lastReport?.message ?? ""), ac.signal)
    await new Promise(r => setTimeout(r, 300))
    // the other backend is another store instance on the same directory (local) or another session (remote)
    const writer = other instanceof LocalBackend ? new LocalBackend(new PlanStore((b as LocalBackend).store.dir, { onWarning: () => {} })) : other
    await report(writer, { planRef: plan.id, job: "A", status: "working", message: "from elsewhere" }, clock("agent"))
    const deadline = Date.now() + 15_000
    while (!seen.includes("from elsewhere") && Date.now() < deadline) await new Promise(r => setTimeout(r, 50))
    ac.abort()
    await watching
    expect(seen).toContain("from elsewhere")
  })
})

describe("local store only", () => {
  it("status does not name a dead orchestrator on this machine as running the plan", async () => {
    const b = new LocalBackend(new PlanStore(path.join(tmp(), "store"), { onWarning: () => {} }))
    const plan = await createPlan(b, spec([{ name: "A" }]), "/tmp", clock())
    const now = Date.now()
    // a pid that cannot exist
    await b.updatePlan(plan.id, d => acquireLease(d, { holder: "orchestrator@me:4194302", host: hostName(), pid: 4194302, ttlMs: 60_000 }, { by: "o", now }))
    expect(readPlan((await b.loadPlan(plan.id))!).lease?.expiresAt).toBeGreaterThan(now)
    expect((await status(b, plan.id)).summary.lease).toBeNull()
    await b.updatePlan(plan.id, d =>
      acquireLease(d, { holder: "orchestrator@me:self", host: hostName(), pid: process.pid, ttlMs: 60_000 }, { by: "o", now: now + 1 }, true)
    )
    expect((await status(b, plan.id)).summary.lease?.holder).toBe("orchestrator@me:self")
  })

  it("a deleted or damaged index entry does not make a plan vanish: plan list rebuilds it and warns", async () => {
    const dir = path.join(tmp(), "store")
    const b = new LocalBackend(new PlanStore(dir, { onWarning: () => {} }))
    const p1 = await createPlan(b, spec([{ name: "A" }], { name: "kept" }), "/tmp", clock())
    const p2 = await createPlan(b, spec([{ name: "A" }, { name: "B" }], { name: "lost-entry" }), "/tmp", clock())
    await report(b, { planRef: p2.id, job: "A", status: "working" }, clock())
    unlinkSync(path.join(dir, "plans", `${p2.id}.json`))
    const fresh = new LocalBackend(new PlanStore(dir, { onWarning: () => {} }))
    const { plans, warnings } = await listPlans(fresh)
    expect(plans.map(p => p.name).sort()).toEqual(["kept", "lost-entry"])
    expect(warnings.join("\n")).toContain(p2.id)
    expect((await resolvePlan(fresh, "lost-entry")).id).toBe(p2.id)
    expect((await listPlans(fresh)).warnings).toEqual([])
    expect(p1.id).not.toBe(p2.id)
  })

  it("a report naming its attempt is checked on a recent copy of the plan, and looks again before refusing", async () => {
    const dir = path.join(tmp(), "store")
    const orch = new LocalBackend(new PlanStore(dir, { onWarning: () => {} }))
    const plan = await createPlan(orch, spec([{ name: "A" }]), "/tmp", clock())
    await orch.updatePlan(plan.id, d => setJobStatus(d, "A", "running", { attempt: 1 }, clock("orch")()))
    const live = new PlanStore(dir, { live: true, onWarning: () => {} })
    const agent = new LocalBackend(live)
    // looks at the disk for the plan: listings of its chunk folders (a first load reads them whole)
    let planLooks = 0
    const adapter = live.docs.adapter
    const [list, range] = [adapter.listKeys.bind(adapter), adapter.loadRange.bind(adapter)]
    adapter.listKeys = async key => ((planLooks += key[0] === plan.id ? 1 : 0), list(key))
    adapter.loadRange = async key => ((planLooks += key[0] === plan.id ? 1 : 0), range(key))
    await report(agent, { planRef: plan.id, job: "A", attempt: 1, status: "working", message: "one" }, clock("agent"))
    const first = planLooks
    expect(first).toBeGreaterThan(0)
    await report(agent, { planRef: plan.id, job: "A", attempt: 1, status: "progress", message: "two", progress: 20 }, clock("agent"))
    expect(planLooks).toBe(first) // within the window: the copy it just read answers
    // another process starts attempt 2 (a retry); the agent's copy does not have it yet, so it looks again
    await orch.updatePlan(plan.id, d => setJobStatus(d, "A", "failed", { attempt: 1, reason: "x" }, clock("orch")()))
    await orch.updatePlan(plan.id, d => retryJob(d, "A", clock("orch")()))
    await orch.updatePlan(plan.id, d => setJobStatus(d, "A", "running", { attempt: 2 }, clock("orch")()))
    const r2 = await report(agent, { planRef: plan.id, job: "A", attempt: 2, status: "working", message: "retry" }, clock("agent"))
    expect(r2).toMatchObject({ attempt: 2, jobStatus: "running" })
    expect(planLooks).toBeGreaterThan(first)
    // a job or attempt the plan really lacks is refused after that look, with nothing written
    const before = await changeCount(orch, plan.id)
    await expect(report(agent, { planRef: plan.id, job: "A", attempt: 3, status: "working" }, clock("agent"))).rejects.toThrow(
      'job "A" has no attempt 3 (current is 2)'
    )
    await expect(report(agent, { planRef: plan.id, job: "Z", attempt: 1, status: "working" }, clock("agent"))).rejects.toThrow(/has no job "Z"/)
    expect(await changeCount(orch, plan.id)).toBe(before)
    // and a completed report moves the status on the plan as it is now, not on the copy
    const done = await report(agent, { planRef: plan.id, job: "A", attempt: 2, status: "completed", message: "done" }, clock("agent"))
    expect(done).toMatchObject({ changed: true, jobStatus: "completed" })
    expect((await status(orch, plan.id)).summary.jobs[0]).toMatchObject({ status: "completed", attempt: 2 })
    await live.close()
  })

  it("an updatePlan whose change throws writes nothing", async () => {
    const b = new LocalBackend(new PlanStore(path.join(tmp(), "store"), { onWarning: () => {} }))
    const plan = await createPlan(b, spec([{ name: "A" }]), "/tmp", clock())
    const heads = A.getHeads((await b.loadPlan(plan.id))!)
    await expect(
      b.updatePlan(
        plan.id,
        d => (
          updateAttempt(d, "A", 1, { pid: 1 }, clock()()),
          (() => {
            throw new Error("no")
          })()
        )
      )
    ).rejects.toThrow("no")
    expect(A.getHeads((await b.loadPlan(plan.id))!)).toEqual(heads)
  })
})

describe("sync server only", () => {
  it("a backend that rides out restarts asks the server's listing again while it restarts; one that does not fails at once", async () => {
    const dir = path.join(tmp(), "restarting")
    const token = (await addToken(defaultTokensFile(dir), { plans: ["*"], role: "admin", label: "restart test" })).secret
    let s = new SyncServer({ storeDir: dir, port: 0, host: "127.0.0.1", log: () => {} })
    const { url, port } = await s.start()
    const riding = await RemoteBackend.open({ url, token }, { timeoutMs: 20_000 })
    const oneShot = await RemoteBackend.open({ url, token }, { retry: false, timeoutMs: 20_000 })
    opened.push(riding, oneShot)
    const plan = await createPlan(riding, spec([{ name: "A" }], { name: "restart" }), "/tmp", clock())
    await s.close()
    // the server is away: the one-shot listing names the server; the riding one waits for it to come back
    await expect(listPlans(oneShot)).rejects.toThrow(/cannot reach the server at 127\.0\.0\.1/)
    const listing = listPlans(riding)
    await new Promise(r => setTimeout(r, 700))
    s = new SyncServer({ storeDir: dir, port, host: "127.0.0.1", log: () => {} })
    await s.start()
    try {
      expect((await listing).plans.map(p => p.id)).toEqual([plan.id])
      // and the session itself came back: a report through it is acknowledged by the restarted server
      await report(riding, { planRef: plan.id, job: "A", status: "working", message: "after the restart" }, clock("agent"))
      expect((await status(riding, plan.id)).summary.jobs[0].lastReport?.message).toBe("after the restart")
    } finally {
      await s.close()
    }
  })
})
