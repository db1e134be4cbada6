// concord through its library API (dist/src/index.js), doing what the CLI does for each operation.
import path from "node:path"
import { fileURLToPath } from "node:url"
import { reportLog } from "./craft.mjs"

export const name = "concord"
export const description = "concord library API (PlanStore over DocStore: Automerge documents, one per plan and per job's report log)"

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const DIST = path.join(ROOT, "dist/src/index.js")

let lib
async function concord() {
  lib ??= {
    ...(await import(DIST)),
    ...(await import(path.join(ROOT, "dist/src/ops/endpoint.js"))),
    ...(await import(path.join(ROOT, "dist/src/ops/local.js"))),
  }
  return lib
}

export async function available() {
  try {
    await concord()
    return { ok: true }
  } catch (e) {
    return { ok: false, reason: `cannot load ${DIST} (run npm run build): ${e.message}` }
  }
}

export async function open(dir) {
  const c = await concord()
  const store = new c.PlanStore(dir, { onWarning: m => process.stderr.write(`concord warning: ${m}\n`) })
  const backend = new c.LocalBackend(store)
  const ctx = by => ({ by, now: Date.now() })
  const me = `bench@${process.pid}`
  const endpoints = []
  return {
    store,
    async createPlan({ name, jobs, status = "running" }) {
      const spec = c.validatePlanSpec({ name, maxParallel: 256, jobs: jobs.map(j => ({ name: j, run: "true" })) })
      const { id } = await store.createPlan(spec, dir, ctx(me))
      if (status !== "queued") {
        await store.updatePlan(id, doc => {
          for (const j of jobs) doc = c.setJobStatus(doc, j, status, { pid: process.pid, startedAt: Date.now() }, ctx(`orchestrator@${process.pid}`))
          return doc
        })
      }
      return id
    },
    /**
     * What `concord report STATUS MSG --job J --plan P` does: the report operation (src/ops), through the
     * plan's local endpoint when a process serves one (concord run does), else through the store.
     */
    async report(id, job, r) {
      const by = r.by ?? `job:${job}#1@bench:${process.pid}`
      const out = await c.reportRouted(backend, { planRef: id, job, status: r.status, message: r.message ?? "", progress: r.progress ?? null }, () => ctx(by))
      return { via: out.via }
    },
    /**
     * Give job `job`'s report log `n` reports at once, each the change PlanStore.appendReport makes, with
     * one actor (a long-lived writer's), crafted as the scale workload crafts them (./craft.mjs): a log
     * that took a job all day, in a second.
     */
    async craftReports({ plan, job, n }) {
      const A = await import("@automerge/automerge")
      const log = reportLog(A, c, plan, job, { actor: "c0ffee".padEnd(32, "0") })
      const at = Date.now() - n
      log.append(
        Array.from({ length: n }, (_, i) => ({
          status: "progress",
          message: `step ${i}: editing src/module-${i % 50}.ts`,
          progress: i % 101,
          at: at + i,
          by: `job:${job}#1@bench:1`,
        }))
      )
      await store.docs.save(c.reportDocId(plan, job), log.doc)
      return { n: log.count }
    },
    /** Serve the plan's local endpoint from this process, as `concord run` does while it runs the plan. */
    async serveEndpoint(id) {
      endpoints.push(await c.serveEndpoint(dir, id))
      return { ok: true }
    },
    async loadView(id) {
      return store.loadPlan(id)
    },
    /** test/fixtures/plan-step.mjs fail-and-pause: from the stale document, fail the job, raise on_error, save. */
    async failAndPauseFrom(id, stale, job) {
      const by = `orchestrator@bench:${process.pid}`
      let doc = c.setJobStatus(stale, job, "failed", { exitCode: 1, reason: "exit 1" }, ctx(by))
      doc = c.raiseCheckpoint(doc, "on_error", { jobName: job, failureKind: "job_failed" }, ctx(by))
      await store.docs.save(id, doc)
    },
    async read(id) {
      const view = c.readPlan(await store.loadPlan(id))
      const reports = await store.loadAllReports(
        id,
        view.jobs.map(j => j.name)
      )
      const jobs = {}
      for (const j of view.jobs) jobs[j.name] = { status: j.status, messages: c.readReports(reports.get(j.name)).map(r => r.message) }
      return { status: view.status, checkpoint: view.checkpoint, checkpointJob: view.checkpointContext?.jobName ?? null, jobs }
    },
    /** The orchestrator's view through the store: DocStore.watch on the job's report log. */
    watchReports(id, job, onMessages, pollMs = 500) {
      const w = store.docs.watch([c.reportDocId(id, job)], (_docId, doc) => onMessages(c.readReports(doc).map(r => r.message)), { pollMs })
      return { close: () => w.close() }
    },
    async close() {
      for (const e of endpoints.splice(0)) await e.close()
    },
  }
}
