/**
 * The server killed with SIGKILL in the middle of a sync, then restarted on the same port: the client
 * (still running, reconnecting with backoff) completes, nothing is lost on either side, and the
 * server's store has no damaged chunk.
 */
import { existsSync, readdirSync } from "node:fs"
import path from "node:path"
import * as A from "@automerge/automerge"
import { describe, expect, it } from "vitest"
import { reportDocId } from "../../../src/doc/ids.js"
import { updateAttempt } from "../../../src/doc/plan.js"
import { appendReport, reportsGenesis, type ReportsDocument } from "../../../src/doc/reports.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { addTokenCli, createPlanCli, FOUNDING_PLAN, ok, planHeads, rm, runConcord, startServerProcess, tempRoot, until } from "./helpers.js"

/** Write `n` changes into the plan and B's report log of `dir`, offline. */
async function offlineChanges(dir: string, id: string, n: number, tag: string): Promise<void> {
  const store = new PlanStore(dir)
  let plan = await store.loadPlan(id)
  let log = ((await store.loadReports(id, "B")) ?? reportsGenesis(id, "B")) as ReportsDocument
  for (let i = 0; i < n; i++) {
    const ctx = { by: `${tag}@test`, now: Date.now() + i }
    if (i % 2) plan = updateAttempt(plan, "A", 1, { heartbeatAt: ctx.now }, ctx)
    else log = appendReport(log, { status: "progress", message: `${tag}-${i}`, progress: null, attempt: 1 }, ctx)
  }
  await store.docs.save(id, plan)
  await store.docs.save(reportDocId(id, "B"), log)
}

// both ways a one-shot sync can go: the direct exchange (POST /v1/exchange, retried while the server is
// away) and the sync protocol through a Repo (CONCORD_SYNC_EXCHANGE=0)
describe.each([
  // an exchange is one request: only a kill before its answer interrupts it (the first round's, at once)
  { mode: "exchange", env: {}, started: " exchange from ", n: 3000, every: false },
  // the sync protocol's conversation lasts longer than every round's delay
  { mode: "sync protocol", env: { CONCORD_SYNC_EXCHANGE: "0" }, started: " joined ", n: 1500, every: true },
])("server killed mid-sync ($mode)", ({ env, started, n, every }) => {
  it("SIGKILL during a sync, restart: the sync completes and no change is lost on either side", async () => {
    const root = tempRoot()
    try {
      const [a, b, s] = ["a", "b", "server"].map(n => path.join(root, n))
      const id = await createPlanCli(a, FOUNDING_PLAN)
      const token = await addTokenCli(s, id, "admin")
      let server = await startServerProcess(s)
      const port = server.port
      await ok(a, ["sync", server.url, "--token", token], env)
      await ok(b, ["sync", server.url, "--token", token], env)
      let interrupted = 0

      for (const [round, delay] of [0, 40, 150].entries()) {
        // both machines have offline work; B's goes up first so that A's sync also pulls
        await offlineChanges(a, id, n, `a${round}`)
        await offlineChanges(b, id, 300, `b${round}`)
        await ok(b, ["sync", server.url, "--token", token], env)
        const aBefore = await planHeads(a, id, ["B"])

        const joinsBefore = server.logs().split(started).length
        const syncing = runConcord(a, ["sync", server.url, "--token", token, "--timeout", "60"], { env })
        // kill the server once A's sync has joined (and a little later in later rounds)
        await until("A to join", () => server.logs().split(started).length > joinsBefore, 20_000, 10)
        await new Promise(r => setTimeout(r, delay))
        const killed = await server.stop("SIGKILL")
        expect(killed.signal).toBe("SIGKILL")
        await new Promise(r => setTimeout(r, 300))
        server = await startServerProcess(s, [], { port })
        const r = await syncing
        expect(r.code, `round ${round}: ${r.stderr}`).toBe(0)
        // where the kill did land in the middle, the client lost the server and reconnected
        if (/disconnected from .*reconnecting/.test(r.stderr)) {
          interrupted++
          expect(r.stderr).toMatch(/connected to/)
        }

        // A lost nothing: everything it had is still there (and more)
        const storeA = new PlanStore(a)
        for (const docId of [id, reportDocId(id, "B")]) {
          const doc = await storeA.docs.load<unknown>(docId)
          expect(A.hasHeads(doc!, aBefore[docId].split(","))).toBe(true)
        }
        // B syncs again; all three have the same heads
        await ok(b, ["sync", server.url, "--token", token], env)
        await ok(a, ["sync", server.url, "--token", token], env)
        const heads = await Promise.all([a, b, s].map(d => planHeads(d, id, ["B"])))
        expect(heads[1]).toEqual(heads[0])
        expect(heads[2]).toEqual(heads[0])
      }
      // the kill landed mid-sync at least in the first round (at once after the request arrived)
      expect(interrupted).toBeGreaterThanOrEqual(every ? 3 : 1)
      // every offline report of every round is on the server, and its store has nothing damaged
      const onServer = await new PlanStore(s).loadReports(id, "B")
      expect(onServer!.reports.length).toBe(3 * (n / 2 + 150))
      const q = path.join(s, "quarantine")
      expect(existsSync(q) ? readdirSync(q) : []).toEqual([])
      await server.stop("SIGTERM")
    } finally {
      rm(root)
    }
  }, 150_000)
})
