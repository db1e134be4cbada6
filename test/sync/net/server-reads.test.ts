/**
 * The sync server does not read again what it holds: after the first look at a document, GET
 * /v1/plans?fields=sync, POST /v1/confirm and exchanges that bring nothing cost directory listings, not
 * chunk file reads (each read is also a sha256 of the file and a parse of every change in it). A change
 * another process writes to the store is still read, and only it. Counts of file opens, never timings.
 */
import * as A from "@automerge/automerge"
import type { DocumentId } from "@automerge/automerge-repo"
import { promises as fsp, mkdtempSync, readdirSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import type { WriteContext } from "../../../src/doc/actor.js"
import { reportDocId } from "../../../src/doc/ids.js"
import { type PlanDocument, readPlan, updateAttempt } from "../../../src/doc/plan.js"
import { appendReport, reportsGenesis } from "../../../src/doc/reports.js"
import { ServerApi } from "../../../src/sync/net/api.js"
import { RemoteSession } from "../../../src/sync/net/client.js"
import { SyncServer } from "../../../src/sync/net/server.js"
import { syncOnce } from "../../../src/sync/net/sync.js"
import { addToken, defaultTokensFile } from "../../../src/sync/net/tokens.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { spec } from "../../doc/helpers.js"
import { until } from "../../helpers/until.js"
import { runConcord } from "./helpers.js"

let t = 1_800_000_000_000
const ctx = (by = "tester@host:1"): WriteContext => ({ by, now: ++t })

const roots: string[] = []
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), "concord-server-reads-"))
  roots.push(d)
  return d
}

let server: SyncServer
let url = ""
let serverDir = ""
let token = ""
let planId = ""
let client: PlanStore

/** Chunk files of the server's store opened while `fn` runs ("<doc dir>/<type>/<hash>"). */
async function chunkReads(fn: () => Promise<unknown>): Promise<string[]> {
  const opened: string[] = []
  const open = fsp.open.bind(fsp)
  const spy = vi.spyOn(fsp, "open").mockImplementation(((file: Parameters<typeof fsp.open>[0], ...rest: unknown[]) => {
    const f = String(file)
    if (f.startsWith(serverDir + path.sep) && /[/\\](snapshot|incremental)[/\\][0-9a-f]{64}$/.test(f)) opened.push(path.relative(serverDir, f))
    return (open as (...a: unknown[]) => ReturnType<typeof fsp.open>)(file, ...rest)
  }) as typeof fsp.open)
  try {
    await fn()
  } finally {
    spy.mockRestore()
  }
  return opened
}

/** Every chunk file of the server's store. */
function chunkFiles(): Set<string> {
  const out = new Set<string>()
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory() && e.name !== ".tmp" && e.name !== "quarantine") walk(p)
      else if (e.isFile() && /[/\\](snapshot|incremental)$/.test(d)) out.add(path.relative(serverDir, p))
    }
  }
  walk(serverDir)
  return out
}

beforeAll(async () => {
  serverDir = path.join(tmp(), "server")
  const store = new PlanStore(serverDir, { onWarning: () => {} })
  await store.create()
  // more documents than the server keeps copies of (64): those it answers for from a listing alone
  const jobs = [{ name: "A" }, { name: "B" }, ...Array.from({ length: 70 }, (_, i) => ({ name: `x${i}` }))]
  ;({ id: planId } = await store.createPlan(spec(jobs, { name: "server-reads" }), "/tmp", ctx()))
  for (let i = 0; i < 70; i++) await store.docs.save(reportDocId(planId, `x${i}`), reportsGenesis(planId, `x${i}`))
  // a plan and a report log of many chunk files (a store that never compacts them)
  let plan = await store.loadPlan(planId)
  let log = reportsGenesis(planId, "A")
  await store.docs.save(reportDocId(planId, "A"), log)
  for (let i = 0; i < 20; i++) {
    const p = updateAttempt(plan, "A", 1, { heartbeatAt: t }, ctx("job:A#1@m"), `heartbeat ${i}`)
    const l = appendReport(log, { status: "progress", message: `r${i}`, progress: i, attempt: 1 }, ctx("job:A#1@m"))
    await store.docs.addChunk(planId, A.saveSince(p, A.getHeads(plan)))
    await store.docs.addChunk(reportDocId(planId, "A"), A.saveSince(l, A.getHeads(log)))
    plan = p
    log = l
  }
  token = (await addToken(defaultTokensFile(serverDir), { plans: ["*"], role: "admin", label: "admin" })).secret
  server = new SyncServer({ storeDir: serverDir, port: 0, host: "127.0.0.1", watchPollMs: 50 })
  url = (await server.start()).url
  client = new PlanStore(path.join(tmp(), "client"), { onWarning: () => {} })
  await client.create()
})

afterAll(async () => {
  vi.restoreAllMocks()
  await server?.close()
  for (const r of roots) rmSync(r, { recursive: true, force: true })
})

describe("the sync server reads each chunk file once", () => {
  it("plans calls, confirms and exchanges that bring nothing read no chunk file after the first look", async () => {
    const api = new ServerApi(url, token)
    const ids = [planId, reportDocId(planId, "A"), ...Array.from({ length: 70 }, (_, i) => reportDocId(planId, `x${i}`))]
    // the first sync brings the plan here; its documents are read then (or were at the server's start)
    await syncOnce(client, { url, token, timeoutMs: 60_000 })
    expect((await client.loadReports(planId, "A"))!.reports).toHaveLength(20)
    await api.confirm(ids)
    expect(chunkFiles().size).toBeGreaterThan(40 + 70)

    let plans: Awaited<ReturnType<ServerApi["syncPlans"]>> | undefined
    let heads: Record<string, string[] | null> = {}
    const reads = await chunkReads(async () => {
      for (let i = 0; i < 3; i++) plans = await api.syncPlans()
      heads = await api.confirm(ids)
      for (let i = 0; i < 2; i++) await syncOnce(client, { url, token, timeoutMs: 60_000 })
    })
    expect(reads).toEqual([])
    // (and the answers are the store's)
    expect(plans!.plans.map(p => p.id)).toEqual([planId])
    expect(plans!.plans[0].jobs).toHaveLength(72)
    expect([...plans!.plans[0].docs].sort()).toEqual([...ids].sort())
    const fresh = new PlanStore(serverDir, { onWarning: () => {} })
    for (const id of ids) expect(heads[id]).toEqual(A.getHeads((await fresh.docs.load(id))!))
  })

  it("changes other processes write to the store are read (only their files) and reach the next exchange", async () => {
    await syncOnce(client, { url, token, timeoutMs: 60_000 })
    const before = chunkFiles()
    let added: string[] = []
    const reads = await chunkReads(async () => {
      const r = await runConcord(serverDir, ["cancel", planId, "--json"])
      expect(r.code, r.stderr).toBe(0)
      // and a report log the server keeps no copy of, only its heads and files
      const other = new PlanStore(serverDir, { onWarning: () => {} })
      const log = (await other.loadReports(planId, "x5"))!
      await other.docs.save(reportDocId(planId, "x5"), appendReport(log, { status: "progress", message: "late", progress: 1, attempt: 1 }, ctx("job:x5#1@m")))
      added = [...chunkFiles()].filter(f => !before.has(f))
      await syncOnce(client, { url, token, timeoutMs: 60_000 })
    })
    const dirOf = (id: string) => path.join(id.slice(0, 2), id.slice(2))
    const x5 = dirOf(reportDocId(planId, "x5"))
    expect(added.filter(f => f.startsWith(dirOf(planId)))).not.toEqual([])
    expect(added.filter(f => f.startsWith(x5))).not.toEqual([])
    // the plan (a copy kept): only its new files are read (by the store watcher and by the exchange's look
    // at it); x5's log (no copy kept, its files had not changed until now): read whole
    for (const f of reads) expect(added.includes(f) || f.startsWith(x5)).toBe(true)
    for (const f of added) expect(reads).toContain(f)
    const fresh = new PlanStore(serverDir, { onWarning: () => {} })
    const now = A.getHeads((await fresh.docs.load(planId))!).sort()
    expect(A.getHeads((await client.docs.load(planId))!).sort()).toEqual(now)
    expect((await new ServerApi(url, token).confirm([planId]))[planId]!.sort()).toEqual(now)
    expect(readPlan(await client.loadPlan(planId)).status).toBe("canceled")
    expect(JSON.stringify((await client.loadReports(planId, "x5"))!.reports)).toContain("late")
  }, 30_000)

  it("a live session gets local writes, and the server's Repo does not write their chunk files again", async () => {
    const live = await RemoteSession.open({ url, token, retry: false })
    const renamed: string[] = []
    const rename = fsp.rename.bind(fsp)
    const spy = vi.spyOn(fsp, "rename").mockImplementation((async (from: string, to: string) => {
      renamed.push(path.relative(serverDir, String(to)))
      return rename(from, to)
    }) as typeof fsp.rename)
    try {
      const h = (await live.fetch<PlanDocument>(planId, 20_000))!
      // (the plan, not a small report log: the Repo saves a document under 1 KiB whole, as a snapshot, every time)
      const added: string[] = []
      for (let i = 0; i < 3; i++) {
        const before = chunkFiles()
        const other = new PlanStore(serverDir, { onWarning: () => {} })
        const plan = updateAttempt(await other.loadPlan(planId), "x7", 1, { heartbeatAt: ++t }, ctx("job:x7#1@m"), `live ${i}`)
        await other.docs.save(planId, plan)
        const mine = [...chunkFiles()].filter(f => !before.has(f) && f.includes("/incremental/"))
        added.push(...mine)
        const heads = A.getHeads(plan)
        await until("the live session has it", () => A.hasHeads(h.doc(), heads), 10_000, 10)
        await server.repo.flush([planId as DocumentId])
      }
      expect(added.length).toBeGreaterThan(0)
      // each written once, by its writer: the Repo, saving the same changes as the same bytes, did not
      for (const f of added) expect(renamed.filter(r => r === f)).toHaveLength(1)
    } finally {
      spy.mockRestore()
      await live.close()
    }
  }, 30_000)
})
