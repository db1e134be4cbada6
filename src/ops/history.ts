/**
 * Every change to a plan and its report logs, oldest first: when, who (the `by` each change carries),
 * what it did, in which document. Automerge keeps the whole history; this reads its change metadata.
 */
import * as A from "@automerge/automerge"
import { parseChangeNote } from "../doc/actor.js"
import { readPlan } from "../doc/plan.js"
import type { PlanBackend } from "./backend.js"
import { resolvePlan } from "./resolve.js"

export interface HistoryEntry {
  at: number
  by: string
  did: string
  /** `plan` or `reports:<job>` */
  doc: string
  hash: string
  actor: string
}

export interface HistoryInput {
  planRef?: string
}

export interface HistoryResult {
  planId: string
  plan: string
  entries: HistoryEntry[]
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
  const entries = changeEntries(plan.doc, "plan")
  const logs = await backend.reportLogs(plan.id, readPlan(plan.doc).jobs.map(j => j.name))
  // The shared genesis change of each log (by "concord") is bookkeeping, not an event.
  for (const [job, log] of logs) entries.push(...changeEntries(log, `reports:${job}`).filter(e => e.by !== "concord"))
  entries.sort((a, b) => a.at - b.at || a.hash.localeCompare(b.hash))
  return { planId: plan.id, plan: plan.name, entries }
}
