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
import { type DecodedOp, decodeChangeOps } from "./decode-change.js"
import { InputError } from "./errors.js"
import { REPORTS_KIND, type ReportRecord, type ReportsDoc } from "./model.js"
import { plain } from "./resolve.js"
import { isReportStatus, REPORT_STATUSES, type ReportStatus } from "./states.js"
import { viewCatchesUp } from "./view.js"

export type ReportsDocument = A.Doc<ReportsDoc>

const GENESIS_ACTOR = "00000000000000000000000000000001" as A.ActorId
const imm = (s: string) => new A.ImmutableString(s)

/** The shared first version of a job's report log. Byte-identical on every process. */
export function reportsGenesis(planId: string, job: string): ReportsDocument {
  const doc = A.change(
    A.init<ReportsDoc>({ actor: GENESIS_ACTOR }),
    { time: 0, message: `{"by":"concord","at":0,"did":"create report log of job ${job}"}` },
    d => {
      d.kind = imm(REPORTS_KIND) as unknown as typeof REPORTS_KIND
      d.plan = imm(planId) as unknown as string
      d.job = imm(job) as unknown as string
      d.reports = []
    }
  )
  // Later changes must not reuse the genesis actor.
  return A.clone(doc)
}

export interface NewReport {
  status: string
  message?: string
  progress?: number | null
  attempt: number
  /** See ReportRecord.rid: a report whose rid the log already holds is not appended again. */
  rid?: string
}

export const MAX_MESSAGE_CHARS = 4000
/** A report id: a few to 64 characters of [A-Za-z0-9_-]. */
export const RID_PATTERN = /^[A-Za-z0-9_-]{8,64}$/

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
  if (r.rid !== undefined && (typeof r.rid !== "string" || !RID_PATTERN.test(r.rid)))
    throw new InputError("invalid report id: expected 8 to 64 characters of A-Z, a-z, 0-9, _ or -")
  return { status: r.status, message, progress: p ?? null }
}

/** Whether the log already holds the report with this id (see ReportRecord.rid). */
export function hasReport(doc: ReportsDocument, rid: string): boolean {
  const list = doc.reports
  for (let i = list.length - 1; i >= 0; i--) if (String(list[i].rid ?? "") === rid) return true
  return false
}

/** Append a report; a report whose `rid` the log already holds is not appended again (same document back). */
export function appendReport(doc: ReportsDocument, report: NewReport, ctx: WriteContext): ReportsDocument {
  return appendReports(doc, [{ report, ctx }])
}

/**
 * Append several reports in one change (a group commit: one change, one chunk file, one fsync for many
 * senders). Reports already in the log (by `rid`) are left out; nothing to append gives the same document.
 * `has`: whether `doc` holds a report id, when the caller keeps an index of them (default: hasReport,
 * which reads the whole log).
 */
export function appendReports(
  doc: ReportsDocument,
  batch: { report: NewReport; ctx: WriteContext }[],
  has: (rid: string) => boolean = rid => hasReport(doc, rid)
): ReportsDocument {
  const plan = planAppend(batch, has)
  if (!plan) return doc
  return A.change(doc, plan.options, d => {
    for (const rec of plan.records) d.reports.push(rec as unknown as ReportRecord)
  })
}

/** The backend (Automerge's document without its JavaScript view) that appendReportsToBackend changes. */
export type ReportsBackend = ReturnType<typeof A.getBackend>

/**
 * The same change as {@link appendReports} (the same operations, message and time: the same change, the
 * same hash), made directly on the document's Automerge backend (`A.getBackend(doc)`) instead of through
 * `A.change`, which also brings the document's JavaScript view up to date, a cost that grows with the
 * log (at 30,000 reports, ten times the change itself). The view of the document the backend belongs to
 * is left behind its heads until the caller brings it up to date (one batch for any number of such
 * changes: see view.ts); until then the caller must read values from nowhere but the backend.
 * `has` answers from the caller's own index (reading the view would read a stale one).
 * Returns the records appended, with their Automerge ids ("counter@actor", as a digest wants them),
 * none when every report was already in the log (then nothing was changed). Throws InputError, having
 * changed nothing, if any report is invalid.
 */
export function appendReportsToBackend(
  backend: ReportsBackend,
  batch: { report: NewReport; ctx: WriteContext }[],
  has: (rid: string) => boolean
): DigestRecord[] {
  const plan = planAppend(batch, has)
  if (!plan) return []
  const found = backend.getWithType("_root", "reports")
  if (found?.[0] !== "list") throw new InputError("not a report log: it has no list of reports")
  const list = String(found[1])
  const start = backend.length(list)
  try {
    // what appendReports's push does inside A.change, record by record
    for (const [i, rec] of plan.records.entries()) backend.spliceFromHydrate(list, start + i, 0, [rec])
    backend.commit(plan.options.message, plan.options.time)
  } catch (e) {
    backend.rollback()
    throw e
  }
  return plan.records.map((rec, i) => {
    const op = backend.get(list, start + i)
    return digestRecord(String(op), { ...rec, status: String(rec.status), message: String(rec.message), by: String(rec.by) })!
  })
}

/**
 * Whether this Automerge build makes {@link appendReportsToBackend}'s change exactly as appendReports
 * does, and brings a view left behind by it up to date in one batch with `A.loadIncremental(doc, empty)`
 * (Automerge diffs a document's view from the last state it showed, not from the change it was given).
 * Both rest on parts of Automerge that are not its documented API (`getBackend`'s methods), so a caller
 * asks this once and uses appendReports when it is false. Deterministic: a fixed actor, clock and content.
 */
export function backendAppendWorks(): boolean {
  try {
    const batch = [0, 1].map(i => ({
      report: { status: "progress", message: `probe ${i}`, progress: i === 0 ? 50 : null, attempt: 1, rid: `probe-rid-${i}` },
      ctx: { by: "probe", now: 1_000 + i },
    }))
    const start = reportsGenesis("probe", "probe")
    const viaChange = appendReports(A.clone(start, { actor: PROBE_ACTOR }), batch, () => false)
    let doc = A.clone(start, { actor: PROBE_ACTOR })
    const records = appendReportsToBackend(A.getBackend(doc), batch, () => false)
    doc = viewCatchesUp(doc)
    return (
      records.length === 2 &&
      records.every((r, i) => r.op === A.getObjectId(doc.reports[i])) &&
      JSON.stringify(A.getHeads(doc)) === JSON.stringify(A.getHeads(viaChange)) &&
      JSON.stringify(readReports(doc)) === JSON.stringify(readReports(viaChange))
    )
  } catch {
    return false
  }
}

const PROBE_ACTOR = "0000000000000000000000000000000f" as A.ActorId

/** What appendReports appends, with the change's options; undefined when nothing is to be appended. */
function planAppend(
  batch: { report: NewReport; ctx: WriteContext }[],
  has: (rid: string) => boolean
): { options: { message: string; time: number }; records: Record<string, unknown>[] } | undefined {
  const todo: { r: ReturnType<typeof validateReport>; report: NewReport; ctx: WriteContext }[] = []
  const seen = new Set<string>()
  // every report validated before any is looked up: one invalid report changes nothing
  const checked = batch.map(({ report, ctx }) => ({ r: validateReport(report), report, ctx }))
  for (const c of checked) {
    const rid = c.report.rid
    if (rid !== undefined && (seen.has(rid) || has(rid))) continue
    if (rid !== undefined) seen.add(rid)
    todo.push(c)
  }
  if (todo.length === 0) return undefined
  const first = todo[0]
  const pct = first.r.progress !== null ? ` ${first.r.progress}%` : ""
  const what = todo.length === 1 ? `report ${first.r.status}${pct} for attempt ${first.report.attempt}` : `${todo.length} reports`
  const records = todo.map(({ r, report, ctx }) => {
    const rec: Record<string, unknown> = {
      status: imm(r.status),
      message: imm(r.message),
      progress: r.progress,
      at: ctx.now,
      by: imm(ctx.by),
      attempt: report.attempt,
    }
    if (report.rid !== undefined) rec.rid = imm(report.rid)
    return rec
  })
  return { options: changeOptions(first.ctx, what), records }
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
  last: DigestRecord | null
  /** progressAt / progressOp: when and by which op the progress figure was reported (to fold later reports in correctly). */
  byAttempt: Record<string, AttemptDigest>
}

/** A report in a digest: `op` is the Automerge id ("counter@actor") of its record, when known. */
export type DigestRecord = ReportRecord & { op?: string }

interface AttemptDigest {
  last: DigestRecord | null
  progress: number | null
  progressAt?: number
  progressOp?: string
}

export function digestReports(doc: ReportsDocument | undefined): ReportDigest {
  let digest: ReportDigest = { last: null, byAttempt: {} }
  if (!doc) return digest
  const records = readReports(doc)
  for (const [i, r] of records.entries()) {
    const op = A.getObjectId(doc.reports[i])
    digest = foldReport(digest, op ? { ...r, op } : r)
  }
  return digest
}

/**
 * Reports in one total order, so that a digest does not depend on the order reports are folded in
 * (a log's list order and the order of its changes differ): by time, then for reports made in the
 * same millisecond by the Lamport counter of their record's id (a report appended after another one
 * it had seen always has the higher counter), then by actor and content.
 */
export function compareReports(a: DigestRecord, b: DigestRecord): number {
  if (a.at !== b.at) return a.at < b.at ? -1 : 1
  return compareOps(a.op, b.op) || cmp(tieKey(a), tieKey(b))
}

function compareOps(a: string | undefined, b: string | undefined): number {
  if (a === b) return 0
  if (a === undefined || b === undefined) return a === undefined ? -1 : 1
  const [ca, aa] = splitOp(a)
  const [cb, ab] = splitOp(b)
  return ca !== cb ? (ca < cb ? -1 : 1) : cmp(aa, ab)
}

function splitOp(op: string): [number, string] {
  const at = op.indexOf("@")
  return [Number(op.slice(0, at)), op.slice(at + 1)]
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)
const tieKey = (r: ReportRecord) => JSON.stringify([r.attempt, r.status, r.progress, r.by, r.message])

/**
 * Add one report to a digest (pure). Each field keeps the greatest report in {@link compareReports}
 * order, so folding is commutative and idempotent: a digest of a set of reports is the same whatever
 * the order, and folding a report twice changes nothing.
 */
export function foldReport(digest: ReportDigest, r: DigestRecord): ReportDigest {
  const key = String(r.attempt)
  const prev: AttemptDigest = digest.byAttempt[key] ?? { last: null, progress: null }
  const a: AttemptDigest = { ...prev }
  if (!a.last || compareReports(r, a.last) >= 0) a.last = r
  if (r.progress !== null && newerProgress({ progress: r.progress, progressAt: r.at, progressOp: r.op }, a)) {
    a.progress = r.progress
    a.progressAt = r.at
    if (r.op !== undefined) a.progressOp = r.op
    else delete a.progressOp
  }
  return {
    last: !digest.last || compareReports(r, digest.last) >= 0 ? r : digest.last,
    byAttempt: { ...digest.byAttempt, [key]: a },
  }
}

/** Is progress figure `r` at least as new as `a`'s (by time, then op id, then the higher figure)? */
function newerProgress(r: Pick<AttemptDigest, "progress" | "progressAt" | "progressOp">, a: AttemptDigest): boolean {
  if (a.progressAt === undefined || a.progress === null) return true
  if (r.progressAt === undefined) return false
  if (r.progressAt !== a.progressAt) return r.progressAt > a.progressAt
  const byOp = compareOps(r.progressOp, a.progressOp)
  return byOp !== 0 ? byOp > 0 : (r.progress ?? -1) >= a.progress
}

/** The digest of the union of two sets of reports, from their digests (pure; commutative). */
export function mergeDigests(x: ReportDigest, y: ReportDigest): ReportDigest {
  let out: ReportDigest = x
  for (const [key, b] of Object.entries(y.byAttempt)) {
    const a = out.byAttempt[key]
    if (!a) {
      out = { ...out, byAttempt: { ...out.byAttempt, [key]: b } }
      continue
    }
    const m = { ...a }
    if (b.last && (!m.last || compareReports(b.last, m.last) > 0)) m.last = b.last
    if (b.progress !== null && b.progressAt !== undefined && newerProgress(b, m)) {
      m.progress = b.progress
      m.progressAt = b.progressAt
      if (b.progressOp !== undefined) m.progressOp = b.progressOp
      else delete m.progressOp
    }
    out = { ...out, byAttempt: { ...out.byAttempt, [key]: m } }
  }
  if (y.last && (!out.last || compareReports(y.last, out.last) > 0)) out = { ...out, last: y.last }
  return out
}

/** What reportsInChanges reads of a change: its actor, its first op's counter and its ops. */
type ChangeOps = { actor: string; startOp: number; ops: Pick<DecodedOp, "action" | "obj" | "key" | "insert" | "value">[] }

/** A change's ops, read in JavaScript (decodeChangeOps), or by Automerge when that reader does not take the change. */
function readChangeOps(bytes: Uint8Array): ChangeOps {
  return decodeChangeOps(bytes) ?? (A.decodeChange(bytes) as unknown as ChangeOps)
}

/**
 * The reports appended by these changes, read from the changes' operations without loading a
 * document (the ops appendReport makes: insert a map into the reports list, set its fields). Returns
 * undefined if any change does anything else, so the caller can fall back to reading the document.
 * The shared genesis change (which creates the log) holds no report and is skipped.
 * `decode`: how a change's ops are read (by default in JavaScript where it can, else by Automerge: the
 * same ops either way; a test passes A.decodeChange to compare).
 */
export function reportsInChanges(changes: Uint8Array[], decode: (bytes: Uint8Array) => ChangeOps = readChangeOps): DigestRecord[] | undefined {
  const out: DigestRecord[] = []
  for (const bytes of changes) {
    const c = decode(bytes)
    if (c.actor === GENESIS_ACTOR) continue
    const made = new Map<string, Record<string, unknown>>()
    for (const [i, op] of c.ops.entries()) {
      if (op.action === "makeMap" && op.insert) {
        made.set(`${c.startOp + i}@${c.actor}`, {})
      } else if (op.action === "set" && made.has(op.obj) && op.key !== undefined && !op.insert) {
        made.get(op.obj)![op.key] = op.value
      } else {
        return undefined
      }
    }
    for (const [op, r] of made) {
      const rec = digestRecord(op, r)
      if (!rec) return undefined
      out.push(rec)
    }
  }
  return out
}

/** A report record's fields as a digest holds them, with its record id; undefined if it is not a report. */
function digestRecord(op: string, r: Record<string, unknown>): DigestRecord | undefined {
  if (typeof r.at !== "number" || typeof r.attempt !== "number" || typeof r.status !== "string") return undefined
  return {
    op,
    status: r.status,
    message: typeof r.message === "string" ? r.message : "",
    progress: typeof r.progress === "number" ? r.progress : null,
    at: r.at,
    by: typeof r.by === "string" ? r.by : "",
    attempt: r.attempt,
  } as DigestRecord
}

/**
 * The reports a writer's own change appended to a log, read from the log after the change (`before` is
 * the log the change was made on): what reportsInChanges would read from that change, with their record
 * ids, without encoding and decoding it. A live store folds its own reports into a log's digest with it.
 * Undefined when the records past `before`'s end are not all this document's actor's reports (then the
 * change was not one plain append on `before`).
 */
export function appendedReports(before: ReportsDocument, after: ReportsDocument): DigestRecord[] | undefined {
  const actor = A.getActorId(after)
  const out: DigestRecord[] = []
  for (let i = before.reports.length; i < after.reports.length; i++) {
    const el = after.reports[i]
    const op = A.getObjectId(el)
    if (!op || splitOp(op)[1] !== actor) return undefined
    const rec = digestRecord(op, plain<Record<string, unknown>>(el))
    if (!rec) return undefined
    out.push(rec)
  }
  return out
}

export function digestAll(docs: Map<string, ReportsDocument>): Map<string, ReportDigest> {
  return new Map([...docs].map(([job, d]) => [job, digestReports(d)]))
}
