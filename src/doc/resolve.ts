/**
 * Conflict resolution: turning the values that concurrent writers left on one key into one answer that
 * every replica computes the same way.
 *
 * Automerge keeps every concurrent value of a key (`getConflicts`) and picks a default winner by
 * (Lamport counter, actor id): deterministic, but blind to meaning, so a stale `running` can beat a
 * concurrent `completed`. concord reads status keys through these functions instead:
 * - a job attempt's status: the highest-ranked value (states.ts JOB_RANK), so a merged status never
 *   moves backwards through the job state machine;
 * - the plan's status: the highest PLAN_CONFLICT_PRIORITY (stopping beats going on);
 * - the checkpoint: a raised checkpoint beats a cleared one.
 * The next write to the key (made from the resolved view) overwrites all the concurrent values, which
 * settles the conflict for good.
 */
import * as A from "@automerge/automerge"
import { CHECKPOINTS, type CheckpointName, isJobStatus, isPlanStatus, JOB_RANK, type JobStatus, PLAN_CONFLICT_PRIORITY, type PlanStatus } from "./states.js"

/** Deep copy of a stored value with ImmutableStrings turned into plain strings. */
export function plain<T = unknown>(v: unknown): T {
  if (v === null || v === undefined) return v as T
  if (v instanceof A.ImmutableString) return v.val as T
  if (Array.isArray(v)) return v.map(x => plain(x)) as T
  if (v instanceof Date || v instanceof Uint8Array) return v as T
  if (typeof v === "object") {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = plain(x)
    return out as T
  }
  return v as T
}

export function str(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined
  if (v instanceof A.ImmutableString) return v.val
  return typeof v === "string" ? v : String(v)
}

/** All values concurrently present on `obj[key]` (one value when there is no conflict). */
export function conflictValues(obj: unknown, key: string): unknown[] {
  const conflicts = A.getConflicts(obj as A.Doc<unknown>, key)
  if (conflicts && Object.keys(conflicts).length > 0) return Object.values(conflicts)
  const v = (obj as Record<string, unknown>)[key]
  return v === undefined ? [] : [v]
}

/**
 * Resolve the status of attempt `key` in a job's status map: the highest rank among concurrent values.
 * (Statuses are scalars in one map per job, never inside per-attempt objects: two processes that retry a
 * job concurrently both create attempt n, and for a scalar key that is an ordinary conflict, resolved
 * here, while two concurrently created objects would leave one of them invisible.)
 */
export function resolveJobStatus(statusMap: unknown, key: string): { status: JobStatus; conflicted: JobStatus[] } {
  const values = conflictValues(statusMap, key).map(str).filter(isJobStatus)
  if (values.length === 0) return { status: "queued", conflicted: [] }
  const sorted = [...new Set(values)].sort((a, b) => JOB_RANK[b] - JOB_RANK[a])
  return { status: sorted[0], conflicted: sorted.length > 1 ? sorted : [] }
}

export function resolvePlanStatus(plan: unknown): { status: PlanStatus; conflicted: PlanStatus[] } {
  const values = conflictValues(plan, "status").map(str).filter(isPlanStatus)
  if (values.length === 0) return { status: "pending", conflicted: [] }
  const sorted = [...new Set(values)].sort((a, b) => PLAN_CONFLICT_PRIORITY[b] - PLAN_CONFLICT_PRIORITY[a])
  return { status: sorted[0], conflicted: sorted.length > 1 ? sorted : [] }
}

const CHECKPOINT_PRIORITY: Record<CheckpointName, number> = { approval: 0, pre_merge: 1, pre_pr: 2, on_error: 3 }

export function resolveCheckpoint(plan: unknown): {
  checkpoint: CheckpointName | null
  context: Record<string, unknown> | null
} {
  const names = conflictValues(plan, "checkpoint")
    .map(str)
    .filter((s): s is CheckpointName => !!s && (CHECKPOINTS as readonly string[]).includes(s))
    .sort((a, b) => CHECKPOINT_PRIORITY[b] - CHECKPOINT_PRIORITY[a])
  const checkpoint = names[0] ?? null
  if (!checkpoint) return { checkpoint: null, context: null }
  // The context of the winning raise: prefer a context that names the same checkpoint.
  const contexts = conflictValues(plan, "checkpointContext")
    .map(c => plain<Record<string, unknown> | null>(c))
    .filter((c): c is Record<string, unknown> => !!c && typeof c === "object")
  const context = contexts.find(c => c.checkpoint === checkpoint) ?? contexts[0] ?? null
  return { checkpoint, context }
}

/** Numeric max over concurrent values (used for counters such as checkpointSeq). */
export function resolveMax(obj: unknown, key: string): number {
  const nums = conflictValues(obj, key).filter((v): v is number => typeof v === "number")
  return nums.length ? Math.max(...nums) : 0
}
