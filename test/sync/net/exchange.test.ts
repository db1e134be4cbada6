/**
 * The direct change exchange of one-shot `concord sync` (src/sync/net/bulk.ts, POST /v1/exchange):
 * counts and effects, never timings.
 *  - both ways in one request, no WebSocket, the base recorded for next time (a second sync sends nothing);
 *  - every change judged as on the WebSocket path: same refusals, word for word, nothing applied; the
 *    audit records the accepted changes; a live WebSocket session sees what the exchange brought;
 *  - a wrong record costs a resend, not data; a server without the endpoint (404) gets the Repo path;
 *  - the server's size limit on a request says so.
 */
import * as A from "@automerge/automerge"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import type { WriteContext } from "../../../src/doc/actor.js"
import { reportDocId } from "../../../src/doc/ids.js"
import { appendReport, digestReports, reportsGenesis } from "../../../src/doc/reports.js"
import { type PlanDocument, setJobStatus, updateAttempt } from "../../../src/doc/plan.js"
import { readAudit } from "../../../src/sync/net/audit.js"
import { basesFile } from "../../../src/sync/net/bulk.js"
import { RemoteSession, ServerApi, SyncError } from "../../../src/sync/net/client.js"
import { encodeFramed } from "../../../src/sync/net/exchange.js"
import { SyncServer } from "../../../src/sync/net/server.js"
import { syncOnce } from "../../../src/sync/net/sync.js"
import { addToken, defaultTokensFile } from "../../../src/sync/net/tokens.js"
import { DocStore } from "../../../src/sync/store/DocStore.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { spec } from "../../doc/helpers.js"
import { spawnConcord, until } from "./helpers.js"

let t = 1_800_000_000_000
const ctx = (by = "tester@host:1"): WriteContext => ({ by, now: ++t })

const roots: string[] = []
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), "concord-exchange-"))
  roots.push(d)
  return d
}

let server: SyncServer
let url = ""
let serverDir = ""
const tk: Record<string, string> = {}
const logs: string[] = []

beforeAll(async () => {
  serverDir = path.join(tmp(), "server")
  const file = defaultTokensFile(serverDir)
  tk.admin = (await addToken(file, { plans: ["*"], role: "admin", label: "admin" })).secret
  tk.reader = (await addToken(file, { plans: ["*"], role: "reader", label: "reader" })).secret
  tk.writer = (await addToken(file, { plans: ["*"], role: "writer", label: "writer" })).secret
  tk.jobB = (await addToken(file, { plans: ["*"], role: "job:B", label: "jobB" })).secret
  server = new SyncServer({ storeDir: serverDir, port: 0, host: "127.0.0.1", log: l => logs.push(l), watchPollMs: 50 })
  url = (await server.start()).url
})

afterAll(async () => {
  vi.restoreAllMocks()
  await server?.close()
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

async function newStore(): Promise<PlanStore> {
  const s = new PlanStore(path.join(tmp(), "client"), { onWarning: () => {} })
  await s.create()
  return s
}

/** `n` heartbeats of job A in the plan and `n` reports in A's log, as an offline machine makes them. */
async function work(store: PlanStore, id: string, n: number, who: string): Promise<void> {
  let plan = await store.loadPlan(id)
  let log = (await store.loadReports(id, "A")) ?? reportsGenesis(id, "A")
  for (let i = 0; i < n; i++) {
    plan = updateAttempt(plan, "A", 1, { heartbeatAt: t }, ctx(`job:A#1@${who}`), `heartbeat ${who} ${i}`)
    log = appendReport(log, { status: "progress", message: `${who} ${i}`, progress: i % 101, attempt: 1 }, ctx(`job:A#1@${who}`))
  }
  await store.docs.save(id, plan)
  await store.docs.save(reportDocId(id, "A"), log)
}

async function headsIn(dir: string, ids: string[]): Promise<string[]> {
  const s = new PlanStore(dir, { onWarning: () => {} })
  return Promise.all(
    ids.map(async id =>
      A.getHeads((await s.docs.load<unknown>(id))!)
        .sort()
        .join(",")
    )
  )
}

/** Count the exchanges (and their request sizes) a sync makes, and whether it opened a WebSocket. */
function spyExchanges() {
  const calls: number[] = []
  const orig = ServerApi.prototype.exchange
  const ex = vi.spyOn(ServerApi.prototype, "exchange")
  ex.mockImplementation(function (this: ServerApi, body: Buffer, ms?: number) {
    calls.push(body.byteLength)
    return (orig as typeof ServerApi.prototype.exchange).call(this, body, ms)
  })
  const open = vi.spyOn(RemoteSession, "open")
  return {
    calls,
    sessions: () => open.mock.calls.length,
    restore: () => {
      ex.mockRestore()
      open.mockRestore()
    },
  }
}

describe("one-shot sync by direct exchange", () => {
  it("pushes and pulls both ways in one exchange, without a WebSocket; the next sync sends nothing", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }, { name: "B" }], { name: "exchange-both-ways" }), "/tmp", ctx())
    const rid = reportDocId(id, "A")
    const spy = spyExchanges()
    try {
      await work(a, id, 50, "a")
      const first = await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      expect(first.plans.map(p => [p.id, p.newThere, p.docs])).toEqual([[id, true, 2]])
      const b = await newStore()
      const got = await syncOnce(b, { url, token: tk.admin, timeoutMs: 60_000 })
      // the plan (creation + 50 heartbeats) and A's log (genesis + 50 reports)
      expect(got.plans.map(p => [p.id, p.newHere, p.docs, p.received])).toEqual([[id, true, 2, 1 + 50 + 1 + 50]])
      expect((await b.listPlans()).map(p => p.id)).toEqual([id])
      // offline on both sides, then A, B, A
      await work(a, id, 30, "a2")
      await work(b, id, 20, "b2")
      await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      const both = await syncOnce(b, { url, token: tk.admin, timeoutMs: 60_000 })
      expect(both.plans[0].received).toBe(60) // A's 30 heartbeats and 30 reports
      const pull = await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      expect(pull.plans[0].received).toBe(40)
      expect(spy.calls.length).toBe(5) // one exchange per sync
      expect(spy.sessions()).toBe(0) // no WebSocket, no Repo on the client
      const same = await Promise.all([a.dir, b.dir, serverDir].map(d => headsIn(d, [id, rid])))
      expect(same[1]).toEqual(same[0])
      expect(same[2]).toEqual(same[0])
      expect((await new PlanStore(serverDir).loadReports(id, "A"))!.reports.length).toBe(50 + 30 + 20)
      // nothing new: the recorded base says the server has everything; the request carries no changes
      const before = spy.calls.length
      const again = await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      expect(again.plans[0].received).toBe(0)
      const res = await syncOnce(b, { url, token: tk.admin, timeoutMs: 60_000 })
      expect(res.plans[0].received).toBe(0)
      expect(spy.calls.length).toBe(before + 2)
      expect(Math.max(...spy.calls.slice(before))).toBeLessThan(2000) // headers only: ids and heads
    } finally {
      spy.restore()
    }
  }, 120_000)

  it("sends a document new to the server that is one snapshot file as that file, not saved again", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }], { name: "exchange-snapshot-as-is" }), "/tmp", ctx())
    await work(a, id, 20, "a")
    const rid = reportDocId(id, "A")
    // the plan and its report log, each as one snapshot file: what a store's compaction leaves
    const files: Uint8Array[] = []
    for (const doc of [id, rid]) {
      const loaded = (await a.docs.loadBackend(doc))!
      const snap = await a.docs.compactBackend(doc, loaded.raw, loaded.keys)
      expect(snap).toMatch(/^snapshot\//)
      files.push((await a.docs.adapter.load([doc, "snapshot", snap!.split("/")[1]]))!)
    }
    const bodies: Buffer[] = []
    const orig = ServerApi.prototype.exchange
    const ex = vi.spyOn(ServerApi.prototype, "exchange").mockImplementation(function (this: ServerApi, body: Buffer, ms?: number) {
      bodies.push(body)
      return (orig as typeof ServerApi.prototype.exchange).call(this, body, ms)
    })
    // the client's saves (the server runs in this process too): those called from the sync's own code
    const proto = A.getBackend(A.init()).constructor.prototype
    const origSave = proto.save
    let clientSaves = 0
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 100
    const save = vi.spyOn(proto, "save").mockImplementation(function (this: unknown) {
      if (/syncByExchange/.test(new Error().stack ?? "")) clientSaves++
      return origSave.call(this)
    })
    try {
      await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      expect(bodies.length).toBe(1)
      for (const f of files) expect(bodies[0].indexOf(Buffer.from(f))).toBeGreaterThan(0)
      expect(clientSaves).toBe(0)
    } finally {
      Error.stackTraceLimit = limit
      ex.mockRestore()
      save.mockRestore()
    }
    const same = await Promise.all([a.dir, serverDir].map(d => headsIn(d, [id, rid])))
    expect(same[1]).toEqual(same[0])
    expect((await new PlanStore(serverDir).loadReports(id, "A"))!.reports.length).toBe(20)
  }, 60_000)

  it("keeps the cached digest of each report log it brings in current: status after the sync reads no log", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }], { name: "exchange-digests" }), "/tmp", ctx())
    await work(a, id, 40, "a")
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
    const b = await newStore()
    await syncOnce(b, { url, token: tk.admin, timeoutMs: 60_000 }) // new here: the log comes whole
    await work(a, id, 25, "a2")
    await work(b, id, 10, "b2") // b's own reports: its save keeps the cache current
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
    await syncOnce(b, { url, token: tk.admin, timeoutMs: 60_000 }) // a's 25 come in as changes
    const status = new PlanStore(b.dir, { onWarning: () => {} })
    const load = vi.spyOn(status.docs, "load")
    const loadBackend = vi.spyOn(status.docs, "loadBackend")
    const digests = await status.loadReportDigests(id, ["A"])
    expect(load).not.toHaveBeenCalled()
    expect(loadBackend).not.toHaveBeenCalled()
    const log = await new PlanStore(b.dir, { onWarning: () => {} }).loadReports(id, "A")
    expect(log!.reports.length).toBe(40 + 25 + 10)
    expect(digests.get("A")).toEqual(digestReports(log!))
    expect(digests.get("A")!.last!.message).toMatch(/^(a2 24|b2 9)$/)
  })

  it("reads no document unchanged since the last sync: its heads come from the record, what the server sends goes on top", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }], { name: "exchange-unchanged" }), "/tmp", ctx())
    const ids = [id, reportDocId(id, "A")]
    await work(a, id, 20, "a")
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000, plans: [id] })
    const b = await newStore()
    await syncOnce(b, { url, token: tk.admin, timeoutMs: 60_000, plans: [id] })
    await work(b, id, 15, "b")
    await syncOnce(b, { url, token: tk.admin, timeoutMs: 60_000, plans: [id] })
    const fresh = () => new PlanStore(a.dir, { onWarning: () => {} })
    const sync = async (s: PlanStore) => {
      const read = vi.spyOn(s.docs, "loadBackend")
      const r = await syncOnce(s, { url, token: tk.admin, timeoutMs: 60_000, plans: [id] })
      return { received: r.plans.find(p => p.id === id)!.received, read: read.mock.calls.map(c => c[0]) }
    }
    const digestsExact = async () => {
      const status = fresh()
      const load = vi.spyOn(status.docs, "load")
      const digests = await status.loadReportDigests(id, ["A"])
      expect(load).not.toHaveBeenCalled()
      expect(digests.get("A")).toEqual(digestReports((await fresh().loadReports(id, "A"))!))
    }

    // nothing here changed since a's sync: nothing is read; b's 15 heartbeats and 15 reports come in
    expect(await sync(fresh())).toEqual({ received: 30, read: [] })
    expect(await headsIn(a.dir, ids)).toEqual(await headsIn(serverDir, ids))
    await digestsExact()
    // and again, with nothing new anywhere: still nothing read, nothing received
    expect(await sync(fresh())).toEqual({ received: 0, read: [] })

    // a heartbeat here: the plan is read (it has something to send), the log is not
    let plan = await a.loadPlan(id)
    plan = updateAttempt(plan, "A", 1, { heartbeatAt: t }, ctx("job:A#1@a"), "one more")
    await a.docs.save(id, plan)
    expect(await sync(fresh())).toEqual({ received: 0, read: [id] })
    expect(await headsIn(serverDir, ids)).toEqual(await headsIn(a.dir, ids))

    // a log whose cached digest is gone: read after all, to keep the digest exact
    await work(b, id, 5, "b2")
    await syncOnce(b, { url, token: tk.admin, timeoutMs: 60_000, plans: [id] })
    rmSync(path.join(a.dir, "cache", "digests", `${reportDocId(id, "A")}.json`))
    expect(await sync(fresh())).toEqual({ received: 10, read: [reportDocId(id, "A")] })
    expect(await headsIn(a.dir, ids)).toEqual(await headsIn(serverDir, ids))
    await digestsExact()

    // new chunk files in both (another writer's, a compaction's): both are read again
    await work(a, id, 2, "a3")
    const r = await sync(fresh())
    expect(r.read.sort()).toEqual([...ids].sort())
    expect(await headsIn(serverDir, ids)).toEqual(await headsIn(a.dir, ids))
    expect((await new PlanStore(serverDir).loadReports(id, "A"))!.reports.length).toBe(20 + 15 + 5 + 2)
  }, 120_000)

  it("the same changes in two exchanges at once: applied and audited once", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }], { name: "exchange-twice-at-once" }), "/tmp", ctx())
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000, plans: [id] })
    const base = A.getHeads((await a.docs.load(id))!)
    await work(a, id, 300, "a")
    const doc = (await a.docs.load(id))!
    const body = encodeFramed([{ id, heads: A.getHeads(doc), bytes: 0 }], [A.saveSince(doc, base)])
    const api = new ServerApi(url, tk.admin)
    const answers = await Promise.all([api.exchange(body), api.exchange(body), api.exchange(body)])
    expect(answers.every(x => x !== null)).toBe(true)
    expect(await headsIn(serverDir, [id])).toEqual(await headsIn(a.dir, [id]))
    const hashes = (await readAudit(serverDir)).filter(r => r.doc === id).map(r => r.hash)
    expect(hashes.length).toBe(1 + 300) // the plan's creation and each heartbeat, once
  }, 60_000)

  it("a wrong record costs a resend, not changes; a missing one asks the server's heads", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }, { name: "B" }], { name: "exchange-wrong-base" }), "/tmp", ctx())
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
    await work(a, id, 5, "x1")
    const mid = A.getHeads((await a.docs.load(id))!)
    await work(a, id, 5, "x2")
    // claim the server has the first five heartbeats: it does not
    const file = basesFile(a.dir, (await new ServerApi(url, tk.admin).plans()).server.storageId)!
    writeFileSync(file, JSON.stringify({ v: 1, docs: { [id]: mid } }))
    const spy = spyExchanges()
    try {
      await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      expect(spy.calls.length).toBe(2) // the plan went again, whole
    } finally {
      spy.restore()
    }
    expect(await headsIn(serverDir, [id])).toEqual(await headsIn(a.dir, [id]))
    // garbage in the record file: ignored (the server's heads are asked instead)
    writeFileSync(file, "{not json")
    await work(a, id, 3, "x3")
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
    expect(await headsIn(serverDir, [id, reportDocId(id, "A")])).toEqual(await headsIn(a.dir, [id, reportDocId(id, "A")]))
    expect((await new PlanStore(serverDir).loadReports(id, "A"))!.reports.length).toBe(13)
    // a stale record (before all of that): everything since goes again; the server applies and audits it once
    writeFileSync(file, JSON.stringify({ v: 1, docs: { [id]: mid } }))
    await work(a, id, 2, "x4")
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
    expect(await headsIn(serverDir, [id])).toEqual(await headsIn(a.dir, [id]))
    const hashes = (await readAudit(serverDir)).filter(r => r.doc === id).map(r => r.hash)
    expect(new Set(hashes).size).toBe(hashes.length)
    expect(hashes.length).toBe(1 + 5 + 5 + 3 + 2) // the plan's creation and every heartbeat, once
  }, 60_000)

  it("judges every change as the WebSocket path does: same refusal, nothing applied; the audit records what it accepts", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }, { name: "B" }], { name: "exchange-judged" }), "/tmp", ctx())
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
    const serverHeads = async () => headsIn(serverDir, [id])

    // each forbidden write, through the exchange and through the Repo: refused, with the same words
    const attempts: [string, string, (s: PlanStore) => Promise<void>, RegExp][] = [
      ["a reader's report", tk.reader, async s => work(s, id, 1, "reader"), /read-only/],
      [
        "job:B failing job A",
        tk.jobB,
        async s => s.docs.save(id, setJobStatus(await s.loadPlan(id), "A", "failed", { reason: "sabotage" }, ctx("job:B"))),
        /job:B may only change jobs\.B/,
      ],
      [
        "a writer moving a queued job to merged",
        tk.writer,
        async s =>
          s.docs.save(
            id,
            A.change(await s.loadPlan(id), d => {
              ;(d as unknown as { jobs: Record<string, { status: Record<string, unknown> }> }).jobs.B.status["1"] = new A.ImmutableString("merged")
            })
          ),
        /state machine forbids it/,
      ],
    ]
    for (const [what, token, write, reason] of attempts) {
      const messages: string[] = []
      for (const exchange of [true, false]) {
        const s = await newStore()
        await syncOnce(s, { url, token, timeoutMs: 60_000, exchange })
        await write(s)
        const before = await serverHeads()
        const err = await syncOnce(s, { url, token, timeoutMs: 20_000, exchange }).then(
          () => undefined,
          e => e as Error
        )
        expect(err, `${what} (exchange: ${exchange})`).toBeInstanceOf(SyncError)
        expect((err as SyncError).kind).toBe("refused")
        expect(err!.message, what).toMatch(reason)
        expect(await serverHeads(), `${what}: nothing applied`).toEqual(before)
        messages.push(err!.message.replace(/^.*: /, ""))
      }
      // the reason itself, word for word (change hashes differ: each store made its own)
      const norm = (m: string) => m.replace(/[0-9a-f]{8}(\.\.[0-9a-f]{8})?/g, "H")
      expect(norm(messages[0]), what).toBe(norm(messages[1]))
    }
    expect(logs.some(l => /refused sync from .*token .* for .*read-only/.test(l))).toBe(true)

    // accepted: a job:B report and B completing, each change in the audit with its token
    const admin = await newStore()
    await syncOnce(admin, { url, token: tk.admin, timeoutMs: 60_000 })
    await admin.docs.save(id, setJobStatus(await admin.loadPlan(id), "B", "running", {}, ctx("orchestrator@x")))
    await syncOnce(admin, { url, token: tk.admin, timeoutMs: 60_000 })
    const agent = await newStore()
    await syncOnce(agent, { url, token: tk.jobB, timeoutMs: 60_000 })
    const log = appendReport(reportsGenesis(id, "B"), { status: "completed", message: "B done", progress: 100, attempt: 1 }, ctx("job:B#1@x"))
    await agent.docs.save(reportDocId(id, "B"), log)
    await agent.docs.save(id, setJobStatus(await agent.loadPlan(id), "B", "completed", {}, ctx("job:B#1@x")))
    const auditBefore = (await readAudit(serverDir)).length
    await syncOnce(agent, { url, token: tk.jobB, timeoutMs: 60_000 })
    const audit = (await readAudit(serverDir)).slice(auditBefore)
    expect(audit.map(r => [r.doc, r.label, r.role]).sort()).toEqual(
      [
        [id, "jobB", "job:B"],
        [reportDocId(id, "B"), "jobB", "job:B"],
        [reportDocId(id, "B"), "jobB", "job:B"],
      ].sort()
    )
    // sent again (a sync that did not learn the answer): nothing applied or audited twice
    await syncOnce(agent, { url, token: tk.jobB, timeoutMs: 60_000 })
    expect((await readAudit(serverDir)).length).toBe(auditBefore + 3)
    expect((await new PlanStore(serverDir).loadReports(id, "B"))!.reports.map(r => String(r.message))).toEqual(["B done"])
  }, 120_000)

  it("writes the audit records of all its documents with one append (a new report log too), each change once; an audit that fails stores nothing", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }, { name: "B" }], { name: "exchange-one-audit" }), "/tmp", ctx())
    const rid = reportDocId(id, "A")
    const bid = reportDocId(id, "B")
    await work(a, id, 3, "a")
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 }) // the plan and A's log are new there: one at a time
    // then: changes to both, and B's log, new to the server (a report log of a job it knows)
    await work(a, id, 15, "a")
    let blog = reportsGenesis(id, "B")
    for (let i = 0; i < 4; i++) blog = appendReport(blog, { status: "progress", message: `b ${i}`, progress: i, attempt: 1 }, ctx("job:B#1@a"))
    await a.docs.save(bid, blog)
    const plan = (await a.docs.load<unknown>(id))!
    const log = (await a.docs.load<unknown>(rid))!
    const serverBefore = await headsIn(serverDir, [id, rid])
    const s = new PlanStore(serverDir, { onWarning: () => {} })
    const onServer = await Promise.all([id, rid].map(async d => A.getHeads((await s.docs.load<unknown>(d))!)))
    expect(await s.docs.exists(bid)).toBe(false)
    const expected = [...A.getChangesMetaSince(plan, onServer[0]), ...A.getChangesMetaSince(log, onServer[1]), ...A.getChangesMetaSince(blog, [])]
      .map(m => m.hash)
      .sort()
    expect(expected).toHaveLength(35)

    // the audit trail cannot be written: both documents refused with the same words, nothing stored
    const failing = vi.spyOn(server.audit, "append").mockRejectedValueOnce(new Error("disk full (test)"))
    const err = await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 }).catch(e => e)
    expect(failing).toHaveBeenCalledTimes(1) // one append for both documents
    failing.mockRestore()
    expect(err).toBeInstanceOf(SyncError)
    expect(err.message).toMatch(/the server cannot write its audit trail \(disk full \(test\)\); nothing was stored/)
    expect(await headsIn(serverDir, [id, rid])).toEqual(serverBefore)
    expect(await s.docs.exists(bid)).toBe(false)

    // next time: one append for both documents, before they are in place, each change once
    const appends = vi.spyOn(server.audit, "append")
    try {
      await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      expect(appends).toHaveBeenCalledTimes(1)
      expect(appends.mock.calls[0][0].map(r => r.hash).sort()).toEqual(expected)
    } finally {
      appends.mockRestore()
    }
    expect(await headsIn(serverDir, [id, rid, bid])).toEqual(await headsIn(a.dir, [id, rid, bid]))
    const audited = (await readAudit(serverDir)).filter(r => expected.includes(r.hash))
    expect(audited.map(r => r.hash).sort()).toEqual(expected)
    expect(new Set(audited.map(r => r.doc))).toEqual(new Set([id, rid, bid]))
    // B's log was created by this exchange: its changes are in the trail as creating it
    expect(audited.filter(r => r.doc === bid && r.created)).toHaveLength(4 + 1)
  })

  it("keeps a document an exchange created in memory: the next exchange does not read it back from disk", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }], { name: "exchange-created-cached" }), "/tmp", ctx())
    const rid = reportDocId(id, "A")
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 }) // the plan
    await work(a, id, 5, "a")
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 }) // A's log, new there
    await work(a, id, 5, "a")
    const loads = vi.spyOn(DocStore.prototype, "loadBackend")
    try {
      await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      const serverReads = loads.mock.calls.filter((c, i) => c[0] === rid && path.resolve((loads.mock.contexts[i] as DocStore).dir) === path.resolve(serverDir))
      // read from what it had in memory, plus the files added since (none): not from nothing
      expect(serverReads.length).toBeGreaterThan(0)
      expect(serverReads.every(c => c[1] !== undefined)).toBe(true)
    } finally {
      loads.mockRestore()
    }
    expect(await headsIn(serverDir, [id, rid])).toEqual(await headsIn(a.dir, [id, rid]))
  })

  it("a live WebSocket session of another client sees what an exchange brought", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }, { name: "B" }], { name: "exchange-live" }), "/tmp", ctx())
    await work(a, id, 3, "a")
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
    const live = await RemoteSession.open({ url, token: tk.reader, retry: false })
    try {
      const h = (await live.fetch<PlanDocument>(id, 20_000))!
      await live.fetch(reportDocId(id, "A"), 20_000)
      await work(a, id, 7, "later")
      await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      const want = A.getHeads((await a.docs.load(id))!)
      await until("the live session has the pushed heartbeats", () => A.hasHeads(h.doc() as A.Doc<unknown>, want), 20_000)
      const rlog = live.handle<{ reports: unknown[] }>(reportDocId(id, "A"))!
      await until("and the pushed reports", () => rlog.doc().reports.length === 10, 20_000)
    } finally {
      await live.close()
    }
  }, 60_000)

  it("a concord sync SIGKILLed during its exchange: the next run converges, nothing applied or audited twice", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }, { name: "B" }], { name: "exchange-client-killed" }), "/tmp", ctx())
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
    const ids = [id, reportDocId(id, "A")]
    for (const delay of [0, 100]) {
      await work(a, id, 2000, `k${delay}`)
      const seen = logs.length
      const run = spawnConcord(a.dir, ["sync", url, "--token", tk.admin, "--timeout", "60"])
      await until("the exchange to arrive", () => logs.slice(seen).some(l => l.startsWith("exchange from")), 30_000, 5)
      await new Promise(r => setTimeout(r, delay))
      run.child.kill("SIGKILL")
      await run.done
      await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      expect(await headsIn(serverDir, ids)).toEqual(await headsIn(a.dir, ids))
    }
    // each change audited once, however many times it was sent
    const hashes = (await readAudit(serverDir)).filter(r => ids.includes(r.doc)).map(r => r.hash)
    expect(new Set(hashes).size).toBe(hashes.length)
    expect((await new PlanStore(serverDir).loadReports(id, "A"))!.reports.length).toBe(2 * 2000)
  }, 120_000)

  it("chunk files the exchanges add to a document are compacted now and then, losing nothing", async () => {
    const a = await newStore()
    const { id } = await a.createPlan(spec([{ name: "A" }, { name: "B" }], { name: "exchange-compact" }), "/tmp", ctx())
    await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
    const rid = reportDocId(id, "A")
    const chunks = async (type: string) => (await server.store.docs.adapter.listKeys([rid, type])).filter(k => k.length === 3).length
    for (let i = 0; i < 40; i++) {
      await work(a, id, 1, `c${i}`)
      await syncOnce(a, { url, token: tk.admin, timeoutMs: 60_000 })
      expect(await chunks("incremental")).toBeLessThanOrEqual(17)
    }
    expect(await chunks("snapshot")).toBeGreaterThanOrEqual(1)
    expect(await headsIn(serverDir, [id, rid])).toEqual(await headsIn(a.dir, [id, rid]))
    expect((await new PlanStore(serverDir).loadReports(id, "A"))!.reports.map(r => String(r.message))).toEqual(Array.from({ length: 40 }, (_, i) => `c${i} 0`))
  }, 120_000)

  it("falls back to the sync protocol when the server has no exchange (404)", async () => {
    const dir = path.join(tmp(), "old-server")
    const token = (await addToken(defaultTokensFile(dir), { plans: ["*"], role: "admin" })).secret
    const old = new SyncServer({ storeDir: dir, port: 0, host: "127.0.0.1", log: () => {}, exchange: false })
    const oldUrl = (await old.start()).url
    const spy = spyExchanges()
    try {
      const a = await newStore()
      const { id } = await a.createPlan(spec([{ name: "A" }, { name: "B" }], { name: "exchange-404" }), "/tmp", ctx())
      await work(a, id, 10, "a")
      await syncOnce(a, { url: oldUrl, token, timeoutMs: 60_000 })
      const b = await newStore()
      const r = await syncOnce(b, { url: oldUrl, token, timeoutMs: 60_000 })
      expect(r.plans[0].received).toBe(22)
      expect(spy.calls.length).toBe(2) // each asked, got 404
      expect(spy.sessions()).toBe(2) // and synced through the Repo
      expect(await headsIn(b.dir, [id, reportDocId(id, "A")])).toEqual(await headsIn(a.dir, [id, reportDocId(id, "A")]))
    } finally {
      spy.restore()
      await old.close()
    }
  }, 60_000)

  it("refuses a request over the server's size limit, saying so, and bad framing with 400", async () => {
    const dir = path.join(tmp(), "small-server")
    const token = (await addToken(defaultTokensFile(dir), { plans: ["*"], role: "admin" })).secret
    const small = new SyncServer({ storeDir: dir, port: 0, host: "127.0.0.1", log: () => {}, maxMessageBytes: 4096 })
    const smallUrl = (await small.start()).url
    try {
      const a = await newStore()
      const { id } = await a.createPlan(spec([{ name: "A" }, { name: "B" }], { name: "exchange-big" }), "/tmp", ctx())
      await work(a, id, 200, "a")
      // over the limit: the server says so (HTTP 413), reads no further, stores nothing; a sync then
      // goes through the sync protocol (smaller messages), as with a server without the exchange
      const body = encodeFramed([{ id, heads: [], bytes: 0 }], [A.saveSince((await a.docs.load(id))!, [])])
      expect(body.byteLength).toBeGreaterThan(4096)
      const res = await fetch(`${new ServerApi(smallUrl, token).base.toString().replace(/\/$/, "")}/v1/exchange`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream" },
        body: new Uint8Array(body),
      })
      expect(res.status).toBe(413)
      expect((await res.json()).error).toMatch(/request body of \d+ bytes is over the limit.*at most 4096 bytes per exchange/)
      expect(await new PlanStore(dir).docs.exists(id)).toBe(false)
      expect(await new ServerApi(smallUrl, token).exchange(body)).toBeNull()
      const api = new ServerApi(smallUrl, token)
      const bad = async (body: Buffer) =>
        api.exchange(body).then(
          () => "accepted",
          e => (e as Error).message
        )
      expect(await bad(Buffer.from([0, 0, 0, 200, 1]))).toMatch(/HTTP 400.*header length/)
      expect(await bad(encodeFramed([{ id: "not a doc id", heads: [], bytes: 0 }], [new Uint8Array(0)]))).toMatch(/HTTP 400.*invalid document id/)
      expect(await bad(encodeFramed([{ id, heads: ["zz"], bytes: 0 }], [new Uint8Array(0)]))).toMatch(/HTTP 400.*heads/)
      // damaged change bytes: refused by the judge, nothing stored
      const junk = encodeFramed([{ id, heads: [], bytes: 0 }], [Uint8Array.from([0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 1, 5, 0, 0, 0, 0, 0])])
      const answer = await api.exchange(junk)
      expect(answer!.toString("latin1")).toMatch(/undecodable change/)
      expect(await new PlanStore(dir).docs.exists(id)).toBe(false)
    } finally {
      await small.close()
    }
  }, 60_000)
})
