/**
 * Access control of `concord serve`, against a real server process: tokens checked before the
 * WebSocket upgrade (401), per-plan visibility, read-only readers, job:NAME tokens limited to their job,
 * admins allowed everything. Refused changes must be absent from the server's store.
 */
import http from "node:http"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { reportDocId } from "../../../src/doc/ids.js"
import { approveCheckpoint, raiseCheckpoint, readPlan, setJobStatus, setPlanStatus, updateAttempt, type PlanDocument } from "../../../src/doc/plan.js"
import { appendReport, reportsGenesis } from "../../../src/doc/reports.js"
import { RemoteSession, SyncError } from "../../../src/sync/net/client.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import {
  addTokenCli,
  createPlanCli,
  FOUNDING_PLAN,
  jobStatuses,
  ok,
  rm,
  runConcord,
  type ServerProcess,
  spawnConcord,
  startServerProcess,
  statusJson,
  tempRoot,
  until,
} from "./helpers.js"

let root: string
let s: string
let server: ServerProcess
let X: string
let Y: string
const tk: Record<string, string> = {}
const ctx = (by: string) => ({ by, now: Date.now() })

beforeAll(async () => {
  root = tempRoot()
  s = path.join(root, "server")
  X = await createPlanCli(s, FOUNDING_PLAN, "x.yaml")
  Y = await createPlanCli(s, FOUNDING_PLAN.replace("founding-bug", "plan-y"), "y.yaml")
  for (const [name, plan, role] of [
    ["adminX", X, "admin"],
    ["readerX", X, "reader"],
    ["jobB", X, "job:B"],
    ["writerY", Y, "writer"],
    ["adminAll", "*", "admin"],
  ]) {
    tk[name] = await addTokenCli(s, plan, role)
  }
  server = await startServerProcess(s)
}, 60_000)

afterAll(async () => {
  await server?.stop("SIGTERM")
  rm(root)
})

function upgradeStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    ws.on("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0)
      ws.terminate()
    })
    ws.on("open", () => {
      ws.terminate()
      resolve(101)
    })
    ws.on("error", e => (/Unexpected server response/.test(e.message) ? undefined : reject(e)))
  })
}

function httpStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, res => (res.resume(), resolve(res.statusCode ?? 0))).on("error", reject)
  })
}

/** A client session with a token, as any agent's process would have. */
async function session(token: string): Promise<RemoteSession> {
  return RemoteSession.open({ url: server.url, token, retry: false })
}

async function serverPlan(): Promise<PlanDocument> {
  return new PlanStore(s, { onWarning: () => {} }).loadPlan(X)
}

describe("tokens", () => {
  it("no token and a wrong token are refused with HTTP 401 before the WebSocket opens", async () => {
    expect(await upgradeStatus(server.url)).toBe(401)
    expect(await upgradeStatus(`${server.url}/?token=concord_nope_nope`)).toBe(401)
    expect(await upgradeStatus(`${server.url}/?token=${tk.adminX}`)).toBe(101)
    const base = server.url.replace("ws:", "http:")
    expect(await httpStatus(`${base}/v1/plans`)).toBe(401)
    expect(await httpStatus(`${base}/v1/plans`, { authorization: "Bearer wrong" })).toBe(401)
    expect(await httpStatus(`${base}/v1/plans`, { authorization: `Bearer ${tk.adminX}` })).toBe(200)

    const m = path.join(root, "nobody")
    const wrong = await runConcord(m, ["sync", server.url, "--token", "concord_wrong"])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/refused the token \(HTTP 401/)
    const none = await runConcord(m, ["sync", server.url], { env: { CONCORD_TOKEN: "" } })
    expect(none.code).toBe(2)
    expect(none.stderr).toMatch(/no token/)
    expect(server.logs()).toMatch(/refused connection from .*: missing token \(HTTP 401\)/)
    expect(server.logs()).toMatch(/refused connection from .*: wrong token \(HTTP 401\)/)
  })

  it("a revoked token loses its open connections and cannot reconnect", async () => {
    const secret = await addTokenCli(s, X, "reader")
    const tokenId = `tk_${secret.split("_")[1]}`
    const w = path.join(root, "revoked")
    const watch = spawnConcord(w, ["sync", server.url, "--token", secret, "--watch"])
    await until("watch connected", () => /watching 1 plan/.test(watch.output().stderr))
    // a bare connection that makes no HTTP calls: only the server can tell it the token is gone (sync
    // --watch polls the server's API and may learn it there first, and leave by itself)
    const bare = await session(secret)
    try {
      await ok(s, ["token", "revoke", tokenId])
      const r = await watch.done
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/refused the token \(HTTP 401/)
      await until("the server to drop the revoked token's open connection", () => !bare.connected, 15_000)
      expect(server.logs()).toMatch(new RegExp(`token ${tokenId} was revoked`))
    } finally {
      await bare.close()
    }
  })

  it("a token for plan X cannot read plan Y: not listed, and unavailable when asked for", async () => {
    const m = path.join(root, "x-only")
    const list = JSON.parse((await ok(m, ["sync", server.url, "--token", tk.adminX, "--list", "--json"])).stdout)
    expect(list.map((p: any) => p.id)).toEqual([X])
    const viaPlanList = JSON.parse((await ok(m, ["plan", "list", "--remote", server.url, "--token", tk.adminX, "--json"])).stdout)
    expect(viaPlanList.map((p: any) => p.id)).toEqual([X])
    const ask = await runConcord(m, ["sync", server.url, "--token", tk.adminX, "--plan", Y])
    expect(ask.code).not.toBe(0)
    expect(ask.stderr).toMatch(/no plan .* among the plans this token can see/)

    const sx = await session(tk.adminX)
    try {
      expect(await sx.fetch(Y, 10_000)).toBeUndefined()
      expect(await sx.fetch(reportDocId(Y, "A"), 10_000)).toBeUndefined()
      expect(String((await sx.fetch<any>(X, 10_000))?.doc().name)).toBe("founding-bug")
      expect(sx.handle(Y)).toBeUndefined()
    } finally {
      await sx.close()
    }
    // sync of "everything" with X's token brings X only
    await ok(m, ["sync", server.url, "--token", tk.adminX])
    const plans = JSON.parse((await ok(m, ["plan", "list", "--json"])).stdout)
    expect(plans.map((p: any) => p.id)).toEqual([X])
  })

  it("a reader's change is refused and is not in the server's store", async () => {
    const r = path.join(root, "reader")
    await ok(r, ["sync", server.url, "--token", tk.readerX])
    await ok(r, ["report", "progress", "sneaky reader report", "--job", "B", "--plan", X])
    const res = await runConcord(r, ["sync", server.url, "--token", tk.readerX, "--timeout", "20"])
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/refused our changes .*read-only/)
    expect(server.logs()).toMatch(/refused sync from .*read-only/)
    const log = await new PlanStore(s, { onWarning: () => {} }).loadReports(X, "B")
    expect(JSON.stringify(log?.reports ?? [])).not.toMatch(/sneaky/)
    // the reader still reads: a fresh reader store gets the plan
    await ok(path.join(root, "reader2"), ["sync", server.url, "--token", tk.readerX])
  })

  it("a job:B token cannot change job A or the plan status, but reports for B", async () => {
    const refusedWith = async (what: string, write: (sess: RemoteSession) => Promise<string[]>, reason: RegExp) => {
      const sess = await session(tk.jobB)
      try {
        const ids = await write(sess)
        const err = await sess.waitSynced(ids, 20_000).then(
          () => undefined,
          e => e
        )
        expect(err, what).toBeInstanceOf(SyncError)
        expect((err as SyncError).kind, what).toBe("refused")
        expect((err as Error).message, what).toMatch(reason)
      } finally {
        await sess.close()
      }
    }
    const plan = async (sess: RemoteSession) => (await sess.fetch<PlanDocument>(X))!
    await refusedWith(
      "job A failed",
      async sess => {
        const h = await plan(sess)
        h.update(d => setJobStatus(d as PlanDocument, "A", "failed", { reason: "sabotage" }, ctx("job:B")) as never)
        return [X]
      },
      /job:B may only change jobs\.B/
    )
    await refusedWith(
      "plan canceled",
      async sess => {
        const h = await plan(sess)
        h.update(d => setPlanStatus(d as PlanDocument, "canceled", ctx("job:B")) as never)
        return [X]
      },
      /outside/
    )
    await refusedWith(
      "job B completed and the plan paused in one change",
      async sess => {
        const h = await plan(sess)
        h.update(d => {
          const x = setJobStatus(d as PlanDocument, "B", "completed", {}, ctx("job:B"))
          return raiseCheckpoint(x, "pre_merge", { jobName: "B" }, ctx("job:B")) as never
        })
        return [X]
      },
      /outside|may not move job B attempt 1 from queued to completed/
    )
    await refusedWith(
      "a report in job A's log",
      async sess => {
        const rid = reportDocId(X, "A")
        sess.importDoc(rid, appendReport(reportsGenesis(X, "A"), { status: "completed", message: "not mine", attempt: 1 }, ctx("job:B")))
        return [rid]
      },
      /may not write the report log of job A/
    )
    let after = readPlan(await serverPlan())
    expect(after.status).toBe("pending")
    expect(jobStatuses({ jobs: after.jobs })).toEqual({ A: "queued", B: "queued", C: "queued" })
    expect(await new PlanStore(s, { onWarning: () => {} }).loadReports(X, "A")).toBeUndefined()

    // the orchestrator (here: an admin session) starts B; only a running job's agent may complete it
    const orch = await session(tk.adminX)
    try {
      const h = (await orch.fetch<PlanDocument>(X))!
      h.update(d => setJobStatus(d as PlanDocument, "B", "running", {}, ctx("orchestrator@test")) as never)
      await orch.waitSynced([X], 20_000)
    } finally {
      await orch.close()
    }
    // the agent of job B, on a machine with no copy of the plan, reports to the server
    const agent = path.join(root, "agent-b")
    const rep = await ok(agent, ["report", "completed", "B done remotely", "--job", "B", "--plan", X, "--remote", server.url, "--token", tk.jobB])
    expect(rep.stdout).toMatch(/reported completed for B #1; job B #1 is now completed/)
    await ok(agent, ["report", "progress", "more", "--progress", "60", "--job", "B", "--plan", X, "--remote", server.url, "--token", tk.jobB])
    const bad = await runConcord(agent, ["report", "completed", "--job", "A", "--plan", X, "--remote", server.url, "--token", tk.jobB])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/refused/)
    after = readPlan(await serverPlan())
    expect(jobStatuses({ jobs: after.jobs })).toEqual({ A: "queued", B: "completed", C: "queued" })
    expect(after.status).toBe("pending")
    const logB = await new PlanStore(s, { onWarning: () => {} }).loadReports(X, "B")
    expect(logB!.reports.map((r: any) => String(r.message))).toEqual(expect.arrayContaining(["B done remotely", "more"]))
    expect(server.logs()).toMatch(/refused sync from .*job:B may only change jobs\.B/)
  })

  it("a job:B agent with its own store syncs many offline reports (bundled changes) with its job token", async () => {
    const agent = path.join(root, "agent-b-store")
    await ok(agent, ["sync", server.url, "--token", tk.jobB])
    const store = new PlanStore(agent)
    let log = (await store.loadReports(X, "B"))!
    for (let i = 0; i < 60; i++) log = appendReport(log, { status: "progress", message: `offline ${i}`, progress: i, attempt: 1 }, ctx("job:B"))
    await store.docs.save(reportDocId(X, "B"), log)
    await store.updatePlan(X, d => updateAttempt(d, "B", 1, { heartbeatAt: Date.now(), exitCode: 0 }, ctx("job:B")))
    const r = await ok(agent, ["sync", server.url, "--token", tk.jobB])
    expect(r.stdout).toMatch(/synced 1 plan/)
    const logB = await new PlanStore(s, { onWarning: () => {} }).loadReports(X, "B")
    expect(logB!.reports.filter((x: any) => String(x.message).startsWith("offline ")).length).toBe(60)
  })

  it("an admin can do everything: plan status, any job, approvals, reports, new plans", async () => {
    const m = path.join(root, "admin")
    await ok(m, ["sync", server.url, "--token", tk.adminX, "--plan", X])
    const store = new PlanStore(m)
    await store.updatePlan(X, d => {
      let x = setJobStatus(d, "A", "running", {}, ctx("admin"))
      x = setJobStatus(x, "A", "failed", { reason: "boom" }, ctx("admin"))
      x = raiseCheckpoint(x, "on_error", { jobName: "A" }, ctx("admin"), { job: "A", attempt: 1 })
      return approveCheckpoint(x, { id: "ap-1" }, ctx("admin")).doc
    })
    await ok(m, ["report", "progress", "admin note", "--job", "C", "--plan", X])
    await ok(m, ["sync", server.url, "--token", tk.adminX, "--plan", X])
    const v = readPlan(await serverPlan())
    expect([v.status, v.checkpoint, v.approvals.length]).toEqual(["paused", "on_error", 1])
    expect(jobStatuses({ jobs: v.jobs })).toEqual({ A: "failed", B: "completed", C: "queued" })

    // a new plan made on this machine goes up with an admin token for "*", and lands in the index
    const Z = await createPlanCli(m, FOUNDING_PLAN.replace("founding-bug", "plan-z"), "z.yaml")
    const denied = await runConcord(m, ["sync", server.url, "--token", tk.writerY, "--plan", Z])
    expect(denied.code).toBe(1)
    expect(denied.stderr).toMatch(/no access to plan/)
    await ok(m, ["sync", server.url, "--token", tk.adminAll, "--plan", Z])
    const listed = JSON.parse((await ok(s, ["plan", "list", "--json"])).stdout)
    expect(listed.map((p: any) => p.name)).toEqual(expect.arrayContaining(["founding-bug", "plan-y", "plan-z"]))
    expect((await statusJson(s, Z)).name).toBe("plan-z")
  })

  it("a writer changes its plan but cannot put a new plan on the server, even bypassing the client's checks", async () => {
    const w = path.join(root, "writer")
    await ok(w, ["sync", server.url, "--token", tk.writerY])
    await ok(w, ["report", "completed", "y-b done", "--job", "B", "--plan", Y])
    await ok(w, ["sync", server.url, "--token", tk.writerY])
    expect(jobStatuses(await statusJson(s, Y)).B).toBe("completed")

    // a plan made here, and a writer token for it: the client will not push it...
    const W = await createPlanCli(w, FOUNDING_PLAN.replace("founding-bug", "plan-w"), "w.yaml")
    const tokenW = await addTokenCli(s, W, "writer")
    await new Promise(r => setTimeout(r, 600)) // the server re-reads the tokens file
    const cli = await runConcord(w, ["sync", server.url, "--token", tokenW, "--plan", W])
    expect(cli.code).toBe(1)
    expect(cli.stderr).toMatch(/only an admin token can push a new plan/)
    // ...and a hand-made client that pushes it anyway is refused by the server
    const sess = await session(tokenW)
    try {
      sess.importDoc(W, await new PlanStore(w).loadPlan(W))
      await expect(sess.waitSynced([W], 8000)).rejects.toThrow(/writer tokens cannot create a plan/)
      expect(await new PlanStore(s, { onWarning: () => {} }).docs.exists(W)).toBe(false)
    } finally {
      await sess.close()
    }
  })
})
