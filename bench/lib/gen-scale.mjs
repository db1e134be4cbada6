// Fills a store with a plan of J jobs and a given total of reports, for the scale workload. Long-lived
// (JSON lines on stdin, like worker.mjs) so that it can grow the same store 1k -> 10k -> 100k.
//   node gen-scale.mjs BACKEND DIR JOBS
//
// BACKEND concord-via-sync: the same reports are written into another machine's store (DIR-peer), which
// `concord sync` pushes to a `concord serve` process (DIR-server); then `concord sync` on DIR receives
// them. The status is measured on DIR, where every report arrived by sync.
//
// concord: 100k reports through 100k `concord report` processes would take hours, so this process
// writes them itself, into the same documents the CLI writes: each report is one Automerge change
// that appends one record to the job's report log, with its own new actor id (as every `concord
// report` process has: DocStore loads with a random actor), byte for byte the change
// PlanStore.appendReport makes (./craft.mjs), stored with the store's own DocStore.save, which
// writes incremental chunks or compacts as in normal use. `fidelity` checks the shortcut.
import { rmSync } from "node:fs"
import path from "node:path"
import { serveOps } from "./serve-ops.mjs"
import { performance } from "node:perf_hooks"
import { loadBackend } from "./backends.mjs"
import { DIST } from "./concord.mjs"
import { reportLog } from "./craft.mjs"

const [backendName, dir, jobsArg] = process.argv.slice(2)
const J = Number(jobsArg)
const jobs = Array.from({ length: J }, (_, i) => `job-${String(i).padStart(4, "0")}`)
const now = () => performance.timeOrigin + performance.now()

export function reportFields(job, i) {
  return {
    status: i % 10 === 0 ? "working" : "progress",
    message: `step ${i}: editing src/module-${i % 50}.ts and running its tests`,
    progress: i % 101,
    by: `job:${job}#1@build-host:${10000 + (i % 50000)}`,
  }
}

/** How many reports job k has when the plan has `total` in all (spread evenly). */
const share = (total, k) => Math.floor(total / J) + (k < total % J ? 1 : 0)

async function concordGenerator(writeDir = dir) {
  const c = await import(DIST)
  const A = await import("@automerge/automerge")
  const store = new c.PlanStore(writeDir, { onWarning: m => process.stderr.write(`concord warning: ${m}\n`) })
  const ctx = by => ({ by, now: Date.now() })
  let plan
  const logs = new Map()

  return {
    async init() {
      const spec = c.validatePlanSpec({ name: `scale-${J}`, maxParallel: Math.min(J, 256), jobs: jobs.map(j => ({ name: j, run: "true" })) })
      plan = (await store.createPlan(spec, writeDir, ctx("user@bench"))).id
      await store.updatePlan(plan, doc => {
        for (const j of jobs) doc = c.setJobStatus(doc, j, "running", { pid: 1000, startedAt: Date.now() }, ctx("orchestrator@bench:1"))
        return doc
      })
      for (const j of jobs) logs.set(j, reportLog(A, c, plan, j))
      return { plan }
    },
    async grow({ to }) {
      for (const [k, job] of jobs.entries()) {
        const log = logs.get(job)
        const want = share(to, k)
        if (want <= log.count) continue
        const fields = []
        for (let i = log.count; i < want; i++) fields.push(reportFields(job, i))
        log.append(fields)
        await store.docs.save(c.reportDocId(plan, job), log.doc)
      }
      return { total: to }
    },
    /** The shortcut against the real path: same change bytes, and same document size for k reports. */
    async fidelity({ k }) {
      // 1. one report: the built change is byte-identical to PlanStore.appendReport's (same actor and time)
      const f0 = reportFields("x", 1)
      const real0 = c.appendReport(
        A.clone(c.reportsGenesis("P", "x")),
        { status: f0.status, message: f0.message, progress: f0.progress, attempt: 1 },
        { by: f0.by, now: 1_700_000_000_123 }
      )
      const realChange = A.decodeChange(A.getLastLocalChange(real0))
      const built0 = reportLog(A, c, "P", "x", { actor: A.getActorId(real0) })
      const builtChange = A.decodeChange(built0.change({ ...f0, at: 1_700_000_000_123 }))
      const identicalChange = realChange.hash === builtChange.hash
      // 2. k reports through the real path (a new store object each: a new actor, as a new process) vs k built
      const spec = c.validatePlanSpec({
        name: "fidelity",
        jobs: [
          { name: "real", run: "true" },
          { name: "built", run: "true" },
        ],
      })
      const fplan = (await store.createPlan(spec, dir, ctx("user@bench"))).id
      const t0 = now()
      for (let i = 0; i < k; i++) {
        const f = reportFields("real", i)
        await new c.PlanStore(dir).appendReport(fplan, "real", { status: f.status, message: f.message, progress: f.progress, attempt: 1 }, ctx(f.by))
      }
      const realMs = now() - t0
      const built = reportLog(A, c, fplan, "built")
      built.append(Array.from({ length: k }, (_, i) => reportFields("built", i)))
      await store.docs.save(c.reportDocId(fplan, "built"), built.doc)
      const measure = async docId => {
        const t = now()
        const d = await new c.PlanStore(dir).docs.load(docId)
        const loadMs = now() - t
        const changes = A.getAllChanges(d)
        return {
          bytes: A.save(d).length,
          changes: changes.length,
          reports: d.reports.length,
          actors: new Set(changes.map(x => A.decodeChange(x).actor)).size,
          loadMs,
        }
      }
      return { k, identicalChange, realPathMs: realMs, real: await measure(c.reportDocId(fplan, "real")), built: await measure(c.reportDocId(fplan, "built")) }
    },
  }
}

async function baselineGenerator() {
  const backend = await loadBackend(backendName)
  const client = await backend.open(dir)
  let plan
  let count = 0
  if (backendName === "sqlite") {
    const ins = client.db.prepare("INSERT INTO reports (plan, job, status, message, progress, at, by) VALUES (?, ?, ?, ?, ?, ?, ?)")
    return {
      async init() {
        plan = await client.createPlan({ name: `scale-${J}`, jobs })
        return { plan }
      },
      async grow({ to }) {
        // in report order, round robin over jobs, as they would arrive
        const per = jobs.map((_, k) => share(count, k))
        client.db.transaction(() => {
          for (let n = count; n < to; n++) {
            const k = n % J
            const i = per[k]++
            const f = reportFields(jobs[k], i)
            ins.run(plan, jobs[k], f.status, f.message, f.progress, Date.now(), f.by)
          }
        })()
        count = to
        return { total: to }
      },
    }
  }
  // json-naive / json-lock: the same file format
  const { planFile, readJson, writeJsonDurable } = await import("../baselines/json-file.mjs")
  return {
    async init() {
      plan = await client.createPlan({ name: `scale-${J}`, jobs })
      return { plan }
    },
    async grow({ to }) {
      const file = planFile(dir, plan)
      const p = await readJson(file)
      const per = jobs.map((_, k) => share(count, k))
      for (let n = count; n < to; n++) {
        const k = n % J
        const i = per[k]++
        const f = reportFields(jobs[k], i)
        p.jobs[jobs[k]].reports.push({ status: f.status, message: f.message, progress: f.progress, at: Date.now(), by: f.by })
      }
      await writeJsonDurable(file, p)
      count = to
      return { total: to }
    },
  }
}

/** concord-via-sync: generate on a peer store, bring the reports to DIR through a sync server. */
async function viaSyncGenerator() {
  const testing = await import("./net-harness.mjs")
  const peerDir = `${dir}-peer`
  const serverDir = `${dir}-server`
  const inner = await concordGenerator(peerDir)
  let server
  let token
  const sync = async store => {
    const r = await testing.runConcord(store, ["sync", server.url, "--token", token, "--quiet", "--timeout", "1200"], { timeoutMs: 1_260_000 })
    if (r.code !== 0) throw new Error(`concord sync (${path.basename(store)}) exited ${r.code}: ${r.stderr.slice(0, 2000)}`)
    return r.ms
  }
  return {
    async init() {
      const out = await inner.init()
      token = await testing.addTokenCli(serverDir, "*", "admin")
      // A plan of J jobs is J + 1 documents, which the server's per-token limit on documents created
      // (default 1,000) must allow: an operator syncing a plan this size raises it (concord serve --token-docs).
      server = await testing.startServerProcess(serverDir, ["--token-docs", String(J + 16)])
      await sync(peerDir)
      await sync(dir)
      return out
    },
    async grow(args) {
      const out = await inner.grow(args)
      const pushMs = await sync(peerDir)
      const pullMs = await sync(dir)
      return { ...out, pushMs, pullMs }
    },
    async exit() {
      await server?.stop("SIGTERM")
      rmSync(peerDir, { recursive: true, force: true })
      rmSync(serverDir, { recursive: true, force: true })
      setImmediate(() => process.exit(0))
      return new Promise(() => {})
    },
  }
}

const gen = backendName === "concord" ? await concordGenerator() : backendName === "concord-via-sync" ? await viaSyncGenerator() : await baselineGenerator()
gen.expectLast ??= ({ to }) => {
  const n = share(to, 0)
  return n > 0 ? { job: jobs[0], message: reportFields(jobs[0], n - 1).message } : null
}
// "exit" gets no answer: the process is gone.
gen.exit ??= () => (setImmediate(() => process.exit(0)), new Promise(() => {}))
serveOps(gen)
