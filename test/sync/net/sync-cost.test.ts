/**
 * What a sync costs the server and the client, counted (not timed: a loaded 2-core machine makes
 * times unreliable, counts are not):
 *  - the server does not read back the chunks its own Repo wrote (its store watcher adopts them), yet it
 *    still picks up what another process writes to its store, on top of what the network brought;
 *  - `concord sync` decides it is done with one confirmation from the server, which answers once it has
 *    our heads (a long poll), instead of polling; a plan the server has goes in one round with its logs;
 *  - the confirmation endpoint refuses bad `want`s and waits no longer than asked.
 */
import * as A from "@automerge/automerge"
import { mkdtempSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import type { WriteContext } from "../../../src/doc/actor.js"
import { reportDocId } from "../../../src/doc/ids.js"
import { appendReport, reportsGenesis } from "../../../src/doc/reports.js"
import { updateAttempt } from "../../../src/doc/plan.js"
import { ServerApi } from "../../../src/sync/net/client.js"
import { SyncServer } from "../../../src/sync/net/server.js"
import { syncOnce } from "../../../src/sync/net/sync.js"
import { addToken, defaultTokensFile } from "../../../src/sync/net/tokens.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { spec } from "../../doc/helpers.js"
import { until } from "./helpers.js"

let t = 1_800_000_000_000
const ctx = (by = "tester@host:1"): WriteContext => ({ by, now: ++t })

const roots: string[] = []
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), "concord-synccost-"))
  roots.push(d)
  return d
}

let server: SyncServer
let url = ""
let admin = ""
let reader = ""
let stranger = ""
let serverDir = ""

beforeAll(async () => {
  serverDir = path.join(tmp(), "server")
  admin = (await addToken(defaultTokensFile(serverDir), { plans: ["*"], role: "admin", label: "admin" })).secret
  reader = (await addToken(defaultTokensFile(serverDir), { plans: ["*"], role: "reader", label: "reader" })).secret
  // a token for a plan of another store only: it may not ask about the plans of these tests
  const otherPlan = (await storeWithWork(0)).id
  stranger = (await addToken(defaultTokensFile(serverDir), { plans: [otherPlan], role: "reader", label: "stranger" })).secret
  server = new SyncServer({ storeDir: serverDir, port: 0, host: "127.0.0.1", log: () => {}, watchPollMs: 50 })
  url = (await server.start()).url
})

afterAll(async () => {
  vi.restoreAllMocks()
  await server?.close()
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

/** A store with a plan (jobs A, B) whose job A has `n` heartbeats and A's report log `n` reports. */
async function storeWithWork(n: number): Promise<{ store: PlanStore; id: string }> {
  const store = new PlanStore(path.join(tmp(), "client"), { onWarning: () => {} })
  const { id } = await store.createPlan(spec([{ name: "A" }, { name: "B" }], { name: `cost-${Math.random().toString(36).slice(2, 8)}` }), "/tmp", ctx())
  let plan = await store.loadPlan(id)
  let log = reportsGenesis(id, "A")
  for (let i = 0; i < n; i++) {
    plan = updateAttempt(plan, "A", 1, { heartbeatAt: t }, ctx("job:A#1@host"), `heartbeat ${i}`)
    log = appendReport(log, { status: "progress", message: `step ${i}`, progress: i % 101, attempt: 1 }, ctx("job:A#1@host"))
  }
  await store.docs.save(id, plan)
  await store.docs.save(reportDocId(id, "A"), log)
  return { store, id }
}

/** Count the chunk reads of the server's store watcher (its DocStore's adapter) for these documents. */
function countChunkReads(docIds: string[]): { reads: () => number } {
  const adapter = server.store.docs.adapter
  const load = adapter.load.bind(adapter)
  let n = 0
  vi.spyOn(adapter, "load").mockImplementation(async key => {
    if (docIds.includes(key[0]) && (key[1] === "incremental" || key[1] === "snapshot")) n++
    return load(key)
  })
  return { reads: () => n }
}

describe("what the server does with a big push", () => {
  it("does not read back what its own Repo wrote; still picks up another process's write and serves it", async () => {
    const { store, id } = await storeWithWork(500)
    const rid = reportDocId(id, "A")
    // the plan first (a plan new to the server), so that the server watches its documents
    await syncOnce(store, { url, token: admin, plans: [id], timeoutMs: 60_000, exchange: false })
    await until("the server watches the plan", async () => (await server.store.listPlans()).some(p => p.id === id))
    // more offline work, pushed in one message per document, while the watcher is counted
    let plan = await store.loadPlan(id)
    let log = (await store.loadReports(id, "A"))!
    for (let i = 0; i < 500; i++) {
      plan = updateAttempt(plan, "A", 1, { heartbeatAt: t }, ctx("job:A#1@host"), `more ${i}`)
      log = appendReport(log, { status: "progress", message: `more ${i}`, progress: 1, attempt: 1 }, ctx("job:A#1@host"))
    }
    await store.docs.save(id, plan)
    await store.docs.save(rid, log)
    await new Promise(r => setTimeout(r, 300)) // the watcher's first scans are done
    const counter = countChunkReads([id, rid])
    const r = await syncOnce(store, { url, token: admin, plans: [id], timeoutMs: 60_000, exchange: false })
    expect(r.plans[0].docs).toBe(2)
    // the server wrote what it received (durable: the confirmation flushes), and its watcher polls every 50 ms
    await new Promise(r => setTimeout(r, 500))
    expect(counter.reads()).toBe(0)

    // another process (a second PlanStore on the server's directory) writes a report on top of all that:
    // the watcher reads that one chunk, applies it on top of what the Repo holds, and the server serves it
    try {
      const local = new PlanStore(serverDir, { onWarning: () => {} })
      const onDisk = (await local.loadReports(id, "A"))!
      await local.docs.save(rid, appendReport(onDisk, { status: "progress", message: "from a local process", progress: 99, attempt: 1 }, ctx()))
      await until("the server's Repo has the local write", () => {
        const h = server.repo.handles[rid as never]
        return !!h?.isReady() && (h.doc() as { reports: { message: unknown }[] }).reports.some(r => String(r.message) === "from a local process")
      })
      expect(counter.reads()).toBeGreaterThanOrEqual(1)
      expect(counter.reads()).toBeLessThanOrEqual(2) // that chunk (twice at most: fs.watch and the poll racing)
      await syncOnce(store, { url, token: admin, plans: [id], timeoutMs: 60_000, exchange: false })
      const mine = (await store.loadReports(id, "A"))!
      expect(mine.reports.length).toBe(1001)
      expect(mine.reports.some(r => String(r.message) === "from a local process")).toBe(true)
    } finally {
      vi.restoreAllMocks()
    }
  }, 120_000)
})

describe("how concord sync decides it is done", () => {
  it("a push to a plan the server has: one round, one confirmation, answered once the server has our heads", async () => {
    const { store, id } = await storeWithWork(20)
    await syncOnce(store, { url, token: admin, plans: [id], timeoutMs: 60_000, exchange: false })
    const plan = await store.loadPlan(id)
    await store.docs.save(id, updateAttempt(plan, "A", 1, { heartbeatAt: t }, ctx("job:A#1@host"), "one more"))
    const confirms: { docs: number; want: boolean }[] = []
    const spy = vi.spyOn(ServerApi.prototype, "confirm")
    spy.mockImplementation(async function (this: ServerApi, docIds, want, waitMs) {
      confirms.push({ docs: docIds.length, want: !!want })
      return ServerApi.prototype.request
        .call(this, "POST", "/v1/confirm", want ? { docs: docIds, want, waitMs } : { docs: docIds })
        .then(r => (r as { heads: Record<string, string[] | null> }).heads)
    })
    try {
      const r = await syncOnce(store, { url, token: admin, plans: [id], timeoutMs: 60_000, exchange: false })
      expect(r.plans.find(p => p.id === id)?.docs).toBe(2)
      // The old way: a confirmation for the plan, then one for its logs, each first asked at once and then
      // polled: at least two. Now one for both; it asks the server to wait for our heads unless the sync
      // protocol already said the server has them.
      expect(confirms.map(c => c.docs)).toEqual([2])
    } finally {
      spy.mockRestore()
    }
    const onServer = (await new ServerApi(url, admin).confirm([id]))[id]
    expect(onServer?.sort()).toEqual(A.getHeads((await store.docs.load(id))!).sort())
  }, 60_000)

  it("the confirmation waits for wanted heads up to waitMs, answers at once when they are there, refuses bad input", async () => {
    const { store, id } = await storeWithWork(3)
    await syncOnce(store, { url, token: admin, plans: [id], timeoutMs: 60_000, exchange: false })
    const api = new ServerApi(url, admin)
    const have = A.getHeads((await store.docs.load(id))!)
    let t0 = Date.now()
    expect((await api.confirm([id], { [id]: have }, 4000))[id]?.sort()).toEqual([...have].sort())
    expect(Date.now() - t0).toBeLessThan(3000) // at once (generous: a loaded machine)
    const absent = "ab".repeat(32)
    t0 = Date.now()
    const r = await api.confirm([id], { [id]: [absent] }, 400)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(390)
    expect(r[id]?.sort()).toEqual([...have].sort()) // what it has: the client sees it lacks ours
    const bad = (body: unknown) =>
      api.request("POST", "/v1/confirm", body).then(
        () => "accepted",
        e => (e as Error).message
      )
    expect(await bad({ docs: [id], want: { [id]: ["zz"] } })).toMatch(/HTTP 400.*want/)
    expect(await bad({ docs: [id], want: { [reportDocId(id, "B")]: have } })).toMatch(/HTTP 400/)
    expect(await bad({ docs: [id], want: { [id]: have }, waitMs: 60_000 })).toMatch(/HTTP 400.*waitMs/)
    expect(await bad({ docs: [id], want: [have] })).toMatch(/HTTP 400/)
    // access is checked before anything waits: a token for another plan is refused at once
    t0 = Date.now()
    await expect(new ServerApi(url, stranger).confirm([id], { [id]: [absent] }, 4000)).rejects.toThrow(/HTTP 403/)
    expect(Date.now() - t0).toBeLessThan(3000)
    // a reader may wait for heads (it only reads)
    expect((await new ServerApi(url, reader).confirm([id], { [id]: have }, 50))[id]).toBeTruthy()
  }, 60_000)
})
