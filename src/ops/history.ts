/**
 * Every change to a plan and its report logs, oldest first: when, who (the `by` each change carries),
 * what it did, in which document. Automerge keeps the whole history; this reads its change metadata.
 */
import * as A from "@automerge/automerge"
import { parseChangeNote } from "../doc/actor.js"
import { InputError } from "../doc/errors.js"
import { readPlan } from "../doc/plan.js"
import { readReports, type ReportsDocument } from "../doc/reports.js"
import { type AuditRecord, claimFitsRole, readAudit } from "../sync/net/audit.js"
import type { PlanBackend } from "./backend.js"

const GENESIS_ACTOR = "00000000000000000000000000000001"
import { resolvePlan } from "./resolve.js"

export interface HistoryEntry {
  at: number
  by: string
  did: string
  /**
   * On a sync server's store (which keeps an audit trail): the token that delivered the change, or null
   * for a change made on the server's machine itself. Absent elsewhere.
   */
  verified?: { token: string; label: string | null; role: string; remote: string; receivedAt: number } | null
  /** Set when the claimed author (`by`) is not one the delivering token may speak for. */
  flag?: string
  /** For a report: its message (exact text). */
  message?: string
  /** `plan` or `reports:<job>` */
  doc: string
  hash: string
  actor: string
}

export interface HistoryInput {
  planRef?: string
  /** Only changes about this job: its report log, and plan changes naming it. */
  job?: string
  /** Only changes at or after this time (ms since the epoch). */
  since?: number
  /** Only the last N changes. */
  limit?: number
}

export interface HistoryResult {
  planId: string
  plan: string
  entries: HistoryEntry[]
  /** Whether entries carry `verified` (the store keeps a sync server's audit trail). */
  audited: boolean
  /** How many entries claim an author their token does not speak for. */
  flagged: number
}

export function changeEntries(doc: A.Doc<unknown>, label: string): HistoryEntry[] {
  return A.getChangesMetaSince(doc, []).map(c => {
    const note = parseChangeNote(c.message)
    return {
      at: note?.at ?? c.time * 1000,
      by: note?.by ?? `actor ${c.actor.slice(0, 8)}`,
      did: note?.did ?? c.message ?? "",
      doc: label,
      hash: c.hash,
      actor: c.actor,
    }
  })
}

export async function history(backend: PlanBackend, input: HistoryInput): Promise<HistoryResult> {
  const plan = await resolvePlan(backend, input.planRef)
  const jobs = readPlan(plan.doc).jobs.map(j => j.name)
  if (input.job && !jobs.includes(input.job)) throw new InputError(`plan "${plan.name}" has no job "${input.job}"`)
  if (input.limit !== undefined && (!Number.isInteger(input.limit) || input.limit < 1))
    throw new InputError(`invalid limit ${input.limit}: expected a whole number from 1`)
  let entries = changeEntries(plan.doc, "plan")
  const logs = await backend.reportLogs(plan.id, input.job ? [input.job] : jobs)
  for (const [job, log] of logs) entries.push(...reportEntries(log, job))
  // A sync server's store keeps an audit trail of the changes it accepted, with the token of each.
  const audit = backend.storeDir ? await auditIndex(backend.storeDir) : undefined
  if (audit) entries = entries.map(e => verify(e, audit))
  const out = filterEntries(entries, input)
  return { planId: plan.id, plan: plan.name, entries: out, audited: !!audit, flagged: out.filter(e => e.flag).length }
}

async function auditIndex(storeDir: string): Promise<Map<string, AuditRecord> | undefined> {
  const records = await readAudit(storeDir)
  if (records.length === 0) return undefined
  const byHash = new Map<string, AuditRecord>()
  for (const r of records) if (!byHash.has(r.hash)) byHash.set(r.hash, r)
  return byHash
}

function verify(e: HistoryEntry, audit: Map<string, AuditRecord>): HistoryEntry {
  const r = audit.get(e.hash)
  const out: HistoryEntry = { ...e, verified: r ? { token: r.token, label: r.label ?? null, role: r.role, remote: r.remote, receivedAt: r.at } : null }
  const claimed = e.by === `actor ${e.actor.slice(0, 8)}` ? null : e.by
  if (r && !claimFitsRole(r.role, claimed)) out.flag = `claims ${e.by}, but token ${r.label ?? r.token} is ${r.role}`
  return out
}

/** A report log's changes, each with the report it appended (matched by author and time). */
function reportEntries(log: ReportsDocument, job: string): HistoryEntry[] {
  const byKey = new Map(readReports(log).map(r => [`${r.by}|${r.at}`, r]))
  // The shared genesis change of each log (its fixed actor, reports.ts) is bookkeeping, not an event.
  // (Matched by actor, not by the claimed "by": a client could claim "concord" to hide a change.)
  return changeEntries(log, `reports:${job}`)
    .filter(e => e.actor !== GENESIS_ACTOR)
    .map(e => {
      const r = byKey.get(`${e.by}|${e.at}`)
      if (!r) return e
      const pct = r.progress !== null ? ` ${r.progress}%` : ""
      return { ...e, did: `job ${job} #${r.attempt}: report ${r.status}${pct}${r.message ? `: ${r.message}` : ""}`, message: r.message }
    })
}

function filterEntries(all: HistoryEntry[], input: HistoryInput): HistoryEntry[] {
  const mentions = input.job ? new RegExp(`(^|[^A-Za-z0-9._-])job ${input.job.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}([^A-Za-z0-9._-]|$)`) : undefined
  let out = all.filter(e => (!mentions || e.doc === `reports:${input.job}` || mentions.test(e.did)) && (input.since === undefined || e.at >= input.since))
  out.sort((a, b) => a.at - b.at || a.hash.localeCompare(b.hash))
  if (input.limit !== undefined) out = out.slice(-input.limit)
  return out
}

/**
 * `history --follow`: the history so far, then every new change as it arrives from any process or
 * machine, until `signal` aborts.
 */
export async function followHistory(
  backend: PlanBackend,
  input: HistoryInput,
  onEntries: (entries: HistoryEntry[]) => void,
  signal: AbortSignal
): Promise<void> {
  const first = await history(backend, input)
  const seen = new Set(first.entries.map(e => e.hash))
  onEntries(first.entries)
  const jobs = readPlan((await resolvePlan(backend, first.planId)).doc).jobs.map(j => j.name)
  let running = Promise.resolve()
  const refresh = () => {
    running = running
      .then(async () => {
        if (signal.aborted) return
        const next = await history(backend, { ...input, planRef: first.planId, limit: undefined })
        const fresh = next.entries.filter(e => !seen.has(e.hash))
        for (const e of fresh) seen.add(e.hash)
        if (fresh.length && !signal.aborted) onEntries(fresh)
      })
      .catch(() => {})
  }
  let pending: NodeJS.Timeout | undefined
  const watcher = backend.watch(first.planId, input.job ? [input.job] : jobs, () => {
    if (!pending) pending = setTimeout(() => ((pending = undefined), refresh()), 20)
  })
  await new Promise<void>(resolve => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })))
  if (pending) clearTimeout(pending)
  watcher.close()
  await running
}
