/**
 * The status of a plan as every front end shows it: the resolved view joined with each job's latest
 * report (src/doc/summary.ts), plus what only a live system knows: whether the orchestrator holding the
 * lease is still alive on this machine, and warnings about the store.
 */
import type { DocId } from "../doc/ids.js"
import { type PlanDocument, type PlanView, readPlan } from "../doc/plan.js"
import { digestReports, type ReportDigest } from "../doc/reports.js"
import { nextSteps, type NextStep, type PlanSummary, summarize } from "../doc/summary.js"
import { isSameProcessAlive } from "../orchestrator/proc.js"
import type { PlanBackend } from "./backend.js"
import { tailLog } from "./logs.js"
import { resolvePlan } from "./resolve.js"

export interface StatusResult {
  summary: PlanSummary
  /** Where relative log paths resolve (local stores only). */
  storeDir: string | null
  warnings: string[]
  next: NextStep[]
  /** The last lines of each failed job's log (local stores only): why it failed, at a glance. */
  failureTails: Record<string, string[]>
}

const FAILURE_TAIL_LINES = 5

async function failureTails(backend: PlanBackend, id: DocId, summary: PlanSummary): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {}
  if (!backend.storeDir) return out
  for (const j of summary.jobs) {
    if (j.status !== "failed" || !j.log) continue
    try {
      const t = await tailLog(backend, { planRef: id, job: j.name, attempt: j.attempt, lines: FAILURE_TAIL_LINES })
      if (t.lines.length) out[j.name] = t.lines
    } catch {
      // no log (the job never started): nothing to show
    }
  }
  return out
}

export async function status(backend: PlanBackend, planRef: string | undefined, now = Date.now()): Promise<StatusResult> {
  const plan = await resolvePlan(backend, planRef)
  return statusOf(backend, plan.id, plan.doc, now)
}

/** The status of an already loaded plan document (watchers call this on every change). */
export async function statusOf(backend: PlanBackend, id: DocId, doc: PlanDocument, now = Date.now()): Promise<StatusResult> {
  const view = readPlan(doc)
  const reports = await backend.reportDigests(
    id,
    view.jobs.map(j => j.name)
  )
  return statusOfView(backend, id, view, reports, now)
}

/**
 * Follow a plan's status as any process or machine changes it: `onStatus` gets a fresh status after every
 * burst of changes (bursts are coalesced, without visible latency), and every `tickMs` (relative times and
 * stale flags change with the clock). Resolves when `signal` aborts.
 */
export async function watchStatus(
  backend: PlanBackend,
  planRef: string | undefined,
  onStatus: (s: StatusResult) => void,
  signal: AbortSignal,
  opts: { tickMs?: number } = {}
): Promise<void> {
  const plan = await resolvePlan(backend, planRef)
  let doc = plan.doc
  const jobs = readPlan(doc).jobs.map(j => j.name)
  const digests = await backend.reportDigests(plan.id, jobs)
  const show = async () => {
    const s = await statusOfView(backend, plan.id, readPlan(doc), digests)
    if (!signal.aborted) onStatus(s)
  }
  await show()
  let pending: NodeJS.Timeout | undefined
  const schedule = () => {
    if (!pending) pending = setTimeout(() => ((pending = undefined), void show()), 15)
  }
  const watcher = backend.watch(plan.id, jobs, c => {
    if (c.job === null) doc = c.doc
    else digests.set(c.job, digestReports(c.doc))
    schedule()
  })
  const tick = opts.tickMs ? setInterval(schedule, opts.tickMs) : undefined
  await new Promise<void>(resolve => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })))
  if (tick) clearInterval(tick)
  if (pending) clearTimeout(pending)
  watcher.close()
}

/** A status from a plan's view and its logs' digests (one reading of the plan for both). */
async function statusOfView(backend: PlanBackend, id: DocId, view: PlanView, digests: Map<string, ReportDigest>, now = Date.now()): Promise<StatusResult> {
  const summary = summarize(id, view, digests, now)
  liveLease(backend, view, summary)
  return {
    summary,
    storeDir: backend.storeDir,
    warnings: await backend.warnings(),
    next: nextSteps(summary),
    failureTails: await failureTails(backend, id, summary),
  }
}

/** A lease held by a process on this machine that is gone is no orchestrator, whatever its expiry says. */
function liveLease(backend: PlanBackend, view: PlanView, summary: PlanSummary): void {
  const lease = view.lease
  if (summary.lease && lease && backend.localHost && lease.host === backend.localHost && !isSameProcessAlive(lease.pid, null)) {
    summary.lease = null
  }
}
