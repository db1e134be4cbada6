/**
 * A job's agent reports: the report is appended to the job's log (durable first: a report is never lost),
 * and `completed` / `failed` also move the attempt's status where the state machine allows it.
 * One rule for the CLI, `--remote`, the MCP server and the library.
 */
import { actorLabel, type WriteContext } from "../doc/actor.js"
import { ConcordError, InputError } from "../doc/errors.js"
import { type JobView, readJob, setJobStatus } from "../doc/plan.js"
import { validateReport } from "../doc/reports.js"
import { canAgentTransition, canJobTransition, type JobStatus, type ReportStatus } from "../doc/states.js"
import { hostName } from "../lib/host.js"
import type { PlanBackend } from "./backend.js"
import { type ResolvedPlan, resolvePlan } from "./resolve.js"

export interface ReportInput {
  planRef?: string
  job: string
  /** default: the job's current attempt */
  attempt?: number
  status: string
  message?: string
  progress?: number | null
  /** The sender's id for the report, when it may send it twice (see ReportRecord.rid). */
  rid?: string
}

export interface ReportResult {
  planId: string
  plan: string
  job: string
  attempt: number
  status: ReportStatus
  message: string
  progress: number | null
  /** The attempt's status after the report. */
  jobStatus: JobStatus
  /** Whether the report moved the attempt's status. */
  changed: boolean
  /** Why a completed/failed report left the status as it was (the report itself is stored). */
  note: string | null
  /** One line for humans, the same in every front end. */
  text: string
}

export async function report(backend: PlanBackend, input: ReportInput, clock: () => WriteContext): Promise<ReportResult> {
  // Everything that needs no plan is checked first: bad input writes nothing.
  if (input.attempt !== undefined && (!Number.isInteger(input.attempt) || input.attempt < 1)) {
    throw new InputError(`invalid attempt ${input.attempt}: expected a whole number from 1`)
  }
  const checked = validateReport({ status: input.status, message: input.message, progress: input.progress, attempt: input.attempt ?? 1, rid: input.rid })
  if (!input.job) throw new InputError("no job given: a report names the job it is for")
  const { plan, job, attempt } = await planForReport(backend, input)
  // Writing as the job's own agent (a job:NAME token on a server): the server takes reports and status
  // moves only for the current attempt, only along the agent transitions (states.ts), and history flags
  // changes whose claimed author is not that agent.
  const agent = (await backend.agentOf?.()) === input.job
  if (agent && attempt !== job.attempt) {
    throw new InputError(`a job token reports for the current attempt only: job "${input.job}" is at attempt ${job.attempt}, not ${attempt}`)
  }
  if (agent) clock = agentClock(clock, input.job, attempt)
  const allowed = agent ? canAgentTransition : canJobTransition
  await backend.appendReport(plan.id, input.job, { ...checked, attempt, ...(input.rid !== undefined ? { rid: input.rid } : {}) }, clock())

  let jobStatus = job.attempts.find(a => a.n === attempt)!.status
  let changed = false
  let note: string | null = null
  const to = checked.status
  if (to === "completed" || to === "failed") {
    const { result } = await backend.updatePlan<{ from: JobStatus; changed: boolean }>(plan.id, doc => {
      const cur = readJob(doc, input.job).attempts.find(a => a.n === attempt)!
      if (cur.status === to || !allowed(cur.status, to)) return { doc, result: { from: cur.status, changed: false } }
      const fields = to === "failed" ? { attempt, reason: checked.message || "reported failed", failureKind: "reported_failed" } : { attempt }
      return { doc: setJobStatus(doc, input.job, to, fields, clock()), result: { from: cur.status, changed: true } }
    })
    changed = result!.changed
    jobStatus = changed ? to : result!.from
    if (!changed && jobStatus !== to) {
      note = `report stored, but job "${input.job}" attempt ${attempt} stays ${jobStatus} (cannot go from ${jobStatus} to ${to}${agent && canJobTransition(jobStatus, to) ? `: a job token moves its job only from running` : ""})`
    }
  }
  const pct = checked.progress !== null ? ` ${checked.progress}%` : ""
  const effect =
    to === "completed" || to === "failed" ? (changed ? `; job ${input.job} #${attempt} is now ${to}` : `; job status unchanged (${jobStatus})`) : ""
  return {
    planId: plan.id,
    plan: plan.name,
    job: input.job,
    attempt,
    status: to,
    message: checked.message,
    progress: checked.progress,
    jobStatus,
    changed,
    note,
    text: `reported ${to}${pct} for ${input.job} #${attempt}${effect}`,
  }
}

/**
 * The plan, job and attempt a report is for. A sender that names its attempt (an MCP server, a job's
 * report) is checked against a copy of the plan read at most PLAN_CHECK_RECENT_MS ago: a job and an
 * attempt, once in the plan, stay there. Only when that copy lacks them is the plan read again, before
 * refusing. Without an attempt, the current one is wanted: always read afresh.
 */
async function planForReport(backend: PlanBackend, input: ReportInput): Promise<{ plan: ResolvedPlan; job: JobView; attempt: number }> {
  const check = (plan: ResolvedPlan) => {
    const job = jobOf(plan.doc, input.job)
    const attempt = input.attempt ?? job.attempt
    if (!job.attempts.some(a => a.n === attempt)) {
      throw new InputError(`job "${input.job}" has no attempt ${attempt} (current is ${job.attempt})`)
    }
    return { plan, job, attempt }
  }
  if (input.attempt !== undefined) {
    try {
      return check(await resolvePlan(backend, input.planRef, { recentMs: PLAN_CHECK_RECENT_MS }))
    } catch (e) {
      if (!(e instanceof ConcordError)) throw e
      // refused on a recent copy: look again
    }
  }
  return check(await resolvePlan(backend, input.planRef))
}

/**
 * A job's view of a plan document, read once per document: a live store hands out one copy of the plan
 * until it changes (an Automerge document never changes in place), and reading a job resolves each
 * attempt's status, conflicts included. Views are only read.
 */
const jobViews = new WeakMap<object, Map<string, JobView>>()
function jobOf(doc: ResolvedPlan["doc"], name: string): JobView {
  let views = jobViews.get(doc)
  if (!views) jobViews.set(doc, (views = new Map()))
  let view = views.get(name)
  if (!view) views.set(name, (view = readJob(doc, name)))
  return view
}

/** How old a live store's copy of the plan may be when a report that names its attempt is checked. */
const PLAN_CHECK_RECENT_MS = 250

/** Changes made with a job token claim to be that job's agent (`job:NAME#N@host:pid`) unless they already do. */
function agentClock(clock: () => WriteContext, job: string, attempt: number): () => WriteContext {
  return () => {
    const c = clock()
    return c.by.startsWith(`job:${job}#`) ? c : { ...c, by: actorLabel({ job, attempt }, hostName(), process.pid) }
  }
}
