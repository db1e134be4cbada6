/**
 * A job's report log: its own Automerge document (id derived from plan id + job name, ids.ts), holding
 * every report the job's agents sent, each with who sent it, when (ms) and for which attempt.
 *
 * Reports are appended to a list, so concurrent reports from any number of processes all survive a
 * merge: an insert never overwrites anything. Keeping them out of the plan document keeps the plan small
 * however chatty the agents are.
 *
 * Every process that writes a job's first report creates the log itself, offline. The creating change
 * is the same bytes everywhere (fixed actor, time 0, same content), so two processes that both create
 * the log produce one genesis change, not two competing `reports` lists.
 */
import * as A from "@automerge/automerge"
import { changeOptions, type WriteContext } from "./actor.js"
import { InputError } from "./errors.js"
import { REPORTS_KIND, type ReportRecord, type ReportsDoc } from "./model.js"
import { plain } from "./resolve.js"
import { isReportStatus, REPORT_STATUSES, type ReportStatus } from "./states.js"

export type ReportsDocument = A.Doc<ReportsDoc>

const GENESIS_ACTOR = "00000000000000000000000000000001" as A.ActorId
const imm = (s: string) => new A.ImmutableString(s)

/** The shared first version of a job's report log. Byte-identical on every process. */
export function reportsGenesis(planId: string, job: string): ReportsDocument {
  const doc = A.change(A.init<ReportsDoc>({ actor: GENESIS_ACTOR }), { time: 0, message: `{"by":"concord","at":0,"did":"create report log of job ${job}"}` }, d => {
    d.kind = imm(REPORTS_KIND) as unknown as typeof REPORTS_KIND
    d.plan = imm(planId) as unknown as string
    d.job = imm(job) as unknown as string
    d.reports = []
  })
  // Later changes must not reuse the genesis actor.
  return A.clone(doc)
}

export interface NewReport {
  status: string
  message?: string
  progress?: number | null
  attempt: number
}

export const MAX_MESSAGE_CHARS = 4000

/** Validate a report's fields; throws InputError naming the problem. */
export function validateReport(r: NewReport): { status: ReportStatus; message: string; progress: number | null } {
  if (!isReportStatus(r.status)) {
    throw new InputError(`invalid report status "${r.status}": expected one of ${REPORT_STATUSES.join(", ")}`)
  }
  const p = r.progress
  if (p !== undefined && p !== null && (typeof p !== "number" || !Number.isFinite(p) || p < 0 || p > 100)) {
    throw new InputError(`invalid progress ${p}: expected a number from 0 to 100`)
  }
  if (!Number.isInteger(r.attempt) || r.attempt < 1) throw new InputError(`invalid attempt ${r.attempt}`)
  const message = r.message ?? ""
  if (typeof message !== "string") throw new InputError("invalid report message: expected text")
  // Characters as people count them (code points), not UTF-16 units: 4000 emoji are 4000 characters.
  const chars = message.length > MAX_MESSAGE_CHARS ? [...message].length : message.length
  if (chars > MAX_MESSAGE_CHARS) throw new InputError(`report message is ${chars} characters; the limit is ${MAX_MESSAGE_CHARS}`)
  return { status: r.status, message, progress: p ?? null }
}

export function appendReport(doc: ReportsDocument, report: NewReport, ctx: WriteContext): ReportsDocument {
  const r = validateReport(report)
  const pct = r.progress !== null ? ` ${r.progress}%` : ""
  return A.change(doc, changeOptions(ctx, `report ${r.status}${pct} for attempt ${report.attempt}`), d => {
    d.reports.push({
      status: imm(r.status),
      message: imm(r.message),
      progress: r.progress,
      at: ctx.now,
      by: imm(ctx.by),
      attempt: report.attempt,
    } as unknown as ReportRecord)
  })
}

export function readReports(doc: ReportsDocument | undefined): ReportRecord[] {
  if (!doc) return []
  return plain<ReportRecord[]>(doc.reports) ?? []
}

/**
 * What a status view needs from a report log, without the log: the latest report overall, and per
 * attempt the latest report and the latest progress figure. Small enough to cache (PlanStore keeps one
 * per log, so `status` on a plan with long logs does not load them).
 */
export interface ReportDigest {
  last: ReportRecord | null
  /** progressAt: when the progress figure was reported (to fold later reports in correctly). */
  byAttempt: Record<string, { last: ReportRecord | null; progress: number | null; progressAt?: number }>
}

export function digestReports(doc: ReportsDocument | undefined): ReportDigest {
  let digest: ReportDigest = { last: null, byAttempt: {} }
  for (const r of readReports(doc)) digest = foldReport(digest, r)
  return digest
}

/** Add one report to a digest (pure; the latest by time wins, ties go to the later one). */
export function foldReport(digest: ReportDigest, r: ReportRecord): ReportDigest {
  const key = String(r.attempt)
  const prev = digest.byAttempt[key] ?? { last: null, progress: null, progressAt: undefined }
  const a = { ...prev } as { last: ReportRecord | null; progress: number | null; progressAt?: number }
  if (!a.last || r.at >= a.last.at) a.last = r
  if (r.progress !== null && r.at >= (a.progressAt ?? -Infinity)) {
    a.progress = r.progress
    a.progressAt = r.at
  }
  return {
    last: !digest.last || r.at >= digest.last.at ? r : digest.last,
    byAttempt: { ...digest.byAttempt, [key]: a },
  }
}

export function digestAll(docs: Map<string, ReportsDocument>): Map<string, ReportDigest> {
  return new Map([...docs].map(([job, d]) => [job, digestReports(d)]))
}
