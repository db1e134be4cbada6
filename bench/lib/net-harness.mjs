// The offline-convergence benchmark (also run by test/sync/net/offline.test.ts), over the one
// real-process harness (test/helpers/processes.mjs: `concord serve` and `concord ...` as child processes
// over separate stores), which the networked workloads (bench/lib/net.mjs ...) use through this module.
// concord's library comes from dist/ (run npm run build first).
import * as A from "@automerge/automerge"
import { mkdtempSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { addTokenCli, runConcord, startServerProcess } from "../../test/helpers/processes.mjs"
import { DIST } from "./concord.mjs"

export { addTokenCli, runConcord, startServerProcess }

const BENCH_PLAN = `name: offline-bench
jobs:
  - { name: a, run: "true" }
  - { name: b, run: "true" }
  - { name: shared, run: "true" }
`

/**
 * Two peers (separate stores) share a plan through a `concord serve` process, go offline, each make
 * `changesPerPeer` changes (half heartbeats of its own job in the plan document, half reports: to its
 * own job's log and to one log both write), then reconnect with `concord sync` (A, B, A). Returns
 * {changesPerPeer, convergeMs, syncMs: {aPush, bBoth, aPull}, converged, serverChanges, dirs?}:
 * convergeMs is the time of the three syncs (including process start-up), converged says whether all
 * three stores have identical heads for every document and every change of both peers.
 */
export async function benchOfflineConvergence(opts = {}) {
  const c = await import(DIST)
  const n = opts.changesPerPeer ?? 1000
  const log = opts.log ?? (() => {})
  const root = mkdtempSync(path.join(os.tmpdir(), "concord-offline-"))
  const dirs = { a: path.join(root, "a"), b: path.join(root, "b"), server: path.join(root, "server") }
  let server
  try {
    const a = new c.PlanStore(dirs.a)
    const spec = c.parsePlanSpec(BENCH_PLAN, "offline-bench.yaml")
    const { id } = await a.createPlan(spec, root, { by: "bench@a", now: Date.now() })
    const token = await addTokenCli(dirs.server, "*", "admin")
    server = await startServerProcess(dirs.server)
    const sync = async dir => {
      const r = await runConcord(dir, ["sync", server.url, "--token", token, "--quiet", "--timeout", "300"], { timeoutMs: 320_000 })
      if (r.code !== 0) throw new Error(`concord sync (${path.basename(dir)}) failed: ${r.stderr}`)
      return r.ms
    }
    await sync(dirs.a)
    await sync(dirs.b)
    log(`plan ${id} on both peers; writing ${n} offline changes on each`)

    const offline = async (dir, job) => {
      const store = new c.PlanStore(dir)
      let plan = await store.loadPlan(id)
      const logs = new Map()
      for (const j of [job, "shared"]) logs.set(j, (await store.loadReports(id, j)) ?? c.reportsGenesis(id, j))
      for (let i = 0; i < n; i++) {
        const ctx = { by: `job:${job}#1@bench`, now: Date.now() + i }
        if (i % 2 === 0) plan = c.updateAttempt(plan, job, 1, { heartbeatAt: ctx.now }, ctx, `heartbeat ${i}`)
        else {
          const j = i % 4 === 1 ? job : "shared"
          logs.set(j, c.appendReport(logs.get(j), { status: "progress", message: `${job}-${i}`, progress: i % 101, attempt: 1 }, ctx))
        }
      }
      await store.docs.save(id, plan)
      for (const [j, d] of logs) await store.docs.save(c.reportDocId(id, j), d)
    }
    await offline(dirs.a, "a")
    await offline(dirs.b, "b")

    const aPush = await sync(dirs.a)
    const bBoth = await sync(dirs.b)
    const aPull = await sync(dirs.a)
    const convergeMs = aPush + bBoth + aPull
    log(`synced: A push ${aPush} ms, B both ways ${bBoth} ms, A pull ${aPull} ms`)

    // Check: identical heads everywhere, and everything both peers wrote is there.
    const ids = [id, ...["a", "b", "shared"].map(j => c.reportDocId(id, j))]
    let converged = true
    let serverChanges = 0
    const stores = [dirs.a, dirs.b, dirs.server].map(d => new c.PlanStore(d))
    for (const docId of ids) {
      const docs = await Promise.all(stores.map(s => s.docs.load(docId)))
      if (docs.some(d => !d)) {
        converged = false
        continue
      }
      const heads = docs.map(d => A.getHeads(d).sort().join(","))
      if (new Set(heads).size !== 1) converged = false
      serverChanges += A.getAllChanges(docs[2]).length
    }
    const plan = c.readPlan(await stores[2].loadPlan(id))
    const reports = await stores[2].loadAllReports(id, ["a", "b", "shared"])
    const count = j => reports.get(j)?.reports.length ?? 0
    // each peer: heartbeats for even i, reports to its own log for i % 4 === 1, to the shared one for i % 4 === 3
    let own = 0
    let shared = 0
    for (let i = 0; i < n; i++) {
      if (i % 4 === 1) own++
      if (i % 4 === 3) shared++
    }
    if (count("a") !== own || count("b") !== own || count("shared") !== 2 * shared) converged = false
    if (!plan.jobs.find(j => j.name === "a")?.current.heartbeatAt || !plan.jobs.find(j => j.name === "b")?.current.heartbeatAt) converged = false
    return { changesPerPeer: n, convergeMs, syncMs: { aPush, bBoth, aPull }, converged, serverChanges, ...(opts.keep ? { dirs } : {}) }
  } finally {
    if (server) await server.stop("SIGTERM")
    if (!opts.keep) rmSync(root, { recursive: true, force: true })
  }
}
