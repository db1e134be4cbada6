/**
 * Time travel: the plan as it was at a past change, for every front end (the dashboard's history slider,
 * `concord status --at`). Automerge keeps every change; the plan and each report log are viewed at the
 * heads that existed then (`A.view(doc, heads)`) and summarized exactly as a live status is.
 *
 * A point in history is named by one of:
 *  - `change`: a change hash from `history()`: everything up to and including that entry, in history's
 *    order (time, then hash), across the plan and its report logs;
 *  - `at`: a millisecond time: every change whose recorded time is at or before it;
 *  - `heads`: the plan document's heads (hex hashes), as `history` or Automerge gives them; report logs
 *    are then taken up to the latest time among those changes.
 * Changes are ordered by the time their writer recorded (`{by, at, did}`), so a writer with a skewed
 * clock shows up at its own time; a change is never shown without the changes it depends on.
 */
import * as A from "@automerge/automerge"
import { InputError } from "../doc/errors.js"
import type { DocId } from "../doc/ids.js"
import { type PlanDocument, readPlan } from "../doc/plan.js"
import { digestReports, type ReportDigest, type ReportsDocument } from "../doc/reports.js"
import { type PlanSummary, summarize } from "../doc/summary.js"
import type { PlanBackend } from "./backend.js"
import { changeEntries, type HistoryEntry } from "./history.js"
import { resolvePlan } from "./resolve.js"

export interface AtInput {
  planRef?: string
  change?: string
  at?: number
  heads?: string[]
}

export interface AtResult {
  planId: string
  plan: string
  /** The time of the newest change shown (ms), or null before the first change. */
  at: number | null
  /** The entry the view ends at (the last one included). */
  entry: HistoryEntry | null
  /** How many history entries are included, of how many in all. */
  included: number
  total: number
  /** The plan document's heads at that point (hex). */
  heads: string[]
  summary: PlanSummary
}

/** The plan (and its report logs) as they were at a point in history. */
export async function planAt(backend: PlanBackend, input: AtInput): Promise<AtResult> {
  checkPoint(input)
  const plan = await resolvePlan(backend, input.planRef)
  const jobs = readPlan(plan.doc).jobs.map(j => j.name)
  const logs = await backend.reportLogs(plan.id, jobs)
  return planAtDocs(plan.id, plan.name, plan.doc, logs, input)
}

/** The pure part of `planAt`, over already loaded documents. */
export function planAtDocs(id: DocId, name: string, doc: PlanDocument, logs: Map<string, ReportsDocument>, input: Omit<AtInput, "planRef">): AtResult {
  checkPoint(input)
  const planEntries = changeEntries(doc, "plan")
  const logEntries = new Map([...logs].map(([job, log]) => [job, changeEntries(log, `reports:${job}`)]))
  const all = [...planEntries, ...[...logEntries.values()].flat().filter(e => e.by !== "concord")]
  all.sort(order)
  let keep: (e: HistoryEntry) => boolean
  if (input.change !== undefined) {
    const want = input.change.toLowerCase()
    const hits = all.filter(e => e.hash.startsWith(want))
    if (hits.length === 0) throw new InputError(`no change ${input.change} in the history of plan "${name}"`)
    if (hits.length > 1 && !hits.every(h => h.hash === hits[0].hash)) throw new InputError(`change prefix ${input.change} is ambiguous: use more of the hash`)
    const last = hits[0]
    keep = e => order(e, last) <= 0
  } else if (input.at !== undefined) {
    const t = input.at
    keep = e => e.at <= t
  } else {
    const heads = input.heads!.map(h => h.toLowerCase())
    const unknown = heads.filter(h => !planEntries.some(e => e.hash === h))
    if (unknown.length) throw new InputError(`the plan has no change ${unknown.join(", ")}`)
    const inPlan = closure(doc, heads)
    const t = Math.max(...planEntries.filter(e => inPlan.has(e.hash)).map(e => e.at))
    keep = e => (e.doc === "plan" ? inPlan.has(e.hash) : e.at <= t)
  }
  const included = all.filter(keep)
  const planDoc = viewUpTo(doc, planEntries.filter(keep))
  const digests = new Map<string, ReportDigest>()
  for (const [job, log] of logs) {
    const entries = logEntries.get(job)!
    // the shared genesis change is always there (it is the log's empty state)
    const v = viewUpTo(
      log,
      entries.filter(e => e.by === "concord" || keep(e))
    )
    if (v) digests.set(job, digestReports(v))
  }
  const entry = included.length ? included[included.length - 1] : null
  const at = entry ? entry.at : null
  if (!planDoc) throw new InputError(`plan "${name}" did not exist yet at that point`)
  const summary = summarize(id, readPlan(planDoc), digests, at ?? 0)
  // a lease is only meaningful live
  summary.lease = null
  return { planId: id, plan: name, at, entry, included: included.length, total: all.length, heads: A.getHeads(planDoc), summary }
}

function checkPoint(input: Omit<AtInput, "planRef">): void {
  const given = [input.change !== undefined, input.at !== undefined, input.heads !== undefined].filter(Boolean).length
  if (given !== 1) throw new InputError("name exactly one point in history: a change hash, a time, or the plan's heads")
  if (input.at !== undefined && !Number.isFinite(input.at)) throw new InputError(`invalid time ${input.at}: expected milliseconds since 1970`)
  if (input.heads !== undefined && (input.heads.length === 0 || input.heads.some(h => !/^[0-9a-f]{64}$/i.test(h)))) {
    throw new InputError("heads must be one or more change hashes (64 hex digits)")
  }
}

/** These changes and every change they depend on, transitively. */
function closure(doc: A.Doc<unknown>, hashes: string[]): Set<string> {
  const meta = new Map(A.getChangesMetaSince(doc, []).map(c => [c.hash, c]))
  const closed = new Set<string>()
  const stack = [...hashes]
  while (stack.length) {
    const h = stack.pop()!
    if (closed.has(h)) continue
    closed.add(h)
    for (const d of meta.get(h)?.deps ?? []) stack.push(d)
  }
  return closed
}

function order(a: HistoryEntry, b: HistoryEntry): number {
  return a.at - b.at || a.hash.localeCompare(b.hash)
}

/**
 * The document as of a set of its changes (closed under dependencies: a change is never shown without
 * what it builds on). `undefined` when the set is empty.
 */
function viewUpTo<T>(doc: A.Doc<T>, entries: HistoryEntry[]): A.Doc<T> | undefined {
  if (entries.length === 0) return undefined
  const meta = new Map(A.getChangesMetaSince(doc, []).map(c => [c.hash, c]))
  const closed = closure(
    doc,
    entries.map(e => e.hash)
  )
  const deps = new Set<string>()
  for (const h of closed) for (const d of meta.get(h)?.deps ?? []) deps.add(d)
  const heads = [...closed].filter(h => !deps.has(h))
  return A.view(doc, heads)
}
