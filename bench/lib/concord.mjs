// concord through its library API (dist/src/index.js), doing what the CLI does for each operation.
import path from "node:path"
import { fileURLToPath } from "node:url"

export const name = "concord"
export const description = "concord library API (PlanStore over DocStore: Automerge documents, one per plan and per job's report log)"

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const DIST = path.join(ROOT, "dist/src/index.js")

let lib
async function concord() {
  lib ??= await import(DIST)
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
  const ctx = by => ({ by, now: Date.now() })
  const me = `bench@${process.pid}`
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
    /** What `concord report STATUS MSG --job J --plan P` does (report.ts), minus resolving the plan name. */
    async report(id, job, r) {
      const by = r.by ?? `job:${job}#1@bench:${process.pid}`
      const j = c.getJob(c.readPlan(await store.loadPlan(id)), job)
      const attempt = j.attempt
      await store.appendReport(id, job, { status: r.status, message: r.message ?? "", progress: r.progress ?? null, attempt }, ctx(by))
      if (r.status === "completed" || r.status === "failed") {
        const to = r.status
        try {
          await store.updatePlan(id, doc => {
            const cur = c.getJob(c.readPlan(doc), job).attempts.find(a => a.n === attempt)
            if (cur.status === to || !c.canJobTransition(cur.status, to)) {
              throw new c.InvalidTransitionError(`job "${job}" attempt ${attempt}`, cur.status, to)
            }
            return c.setJobStatus(doc, job, to, to === "failed" ? { attempt, reason: r.message || "reported failed", failureKind: "reported_failed" } : { attempt }, ctx(by))
          })
        } catch (e) {
          if (!(e instanceof c.InvalidTransitionError)) throw e
        }
      }
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
      const reports = await store.loadAllReports(id, view.jobs.map(j => j.name))
      const jobs = {}
      for (const j of view.jobs) jobs[j.name] = { status: j.status, messages: c.readReports(reports.get(j.name)).map(r => r.message) }
      return { status: view.status, checkpoint: view.checkpoint, checkpointJob: view.checkpointContext?.jobName ?? null, jobs }
    },
    /** The orchestrator's view through the store: DocStore.watch on the job's report log. */
    watchReports(id, job, onMessages, pollMs = 500) {
      const w = store.docs.watch([c.reportDocId(id, job)], (_docId, doc) => onMessages(c.readReports(doc).map(r => r.message)), { pollMs })
      return { close: () => w.close() }
    },
    async close() {},
  }
}
