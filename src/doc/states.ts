/**
 * The plan and job state machines, written down as data.
 *
 * Job statuses live per attempt (see model.ts). Within one attempt every allowed transition moves to a
 * strictly higher rank, so the job state machine is a DAG ordered by rank. That is what makes
 * same-key races safe: when concurrent writers leave several values for one status key, the one with
 * the highest rank wins (resolve.ts), and because every sequential transition also raises the rank, a
 * resolved status can never be earlier than any status a replica had already seen for that attempt.
 * Retrying a job starts a new attempt instead of moving an old one backwards.
 */

export const JOB_STATUSES = [
  "queued",
  "waiting_deps",
  "running",
  "canceled",
  "stopped",
  "failed",
  "completed",
  "ready_to_merge",
  "merging",
  "conflict",
  "needs_rebase",
  "merged",
] as const
export type JobStatus = (typeof JOB_STATUSES)[number]

/** Rank of each job status within an attempt: its index above. Higher wins a same-key conflict. */
export const JOB_RANK: Readonly<Record<JobStatus, number>> = Object.fromEntries(JOB_STATUSES.map((s, i) => [s, i])) as Record<JobStatus, number>

/** Allowed job transitions within one attempt. Every target ranks above its source. */
export const JOB_TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  queued: ["waiting_deps", "running", "canceled", "failed", "completed"],
  waiting_deps: ["running", "canceled", "failed", "completed"],
  running: ["completed", "failed", "stopped", "canceled"],
  canceled: [],
  stopped: [],
  failed: [],
  completed: ["ready_to_merge", "merged"],
  ready_to_merge: ["merging", "merged"],
  merging: ["merged", "conflict", "needs_rebase"],
  conflict: ["needs_rebase"],
  needs_rebase: [],
  merged: [],
}

/**
 * What a job's own agent may do to its job (enforced by the sync server for `job:NAME` tokens; the
 * orchestrator and humans use JOB_TRANSITIONS). An agent moves only its job's current attempt, only
 * along these transitions, and never creates attempts: starting, stopping, retrying, skipping and
 * merging are the orchestrator's and the humans' business.
 */
export const JOB_AGENT_TRANSITIONS: Readonly<Partial<Record<JobStatus, readonly JobStatus[]>>> = {
  running: ["completed", "failed"],
}

/** Facts of its current attempt an agent may record along with (or without) a status change. */
export const AGENT_ATTEMPT_FIELDS: readonly string[] = ["statusAt", "statusBy", "reason", "failureKind", "heartbeatAt", "note", "exitCode", "endedAt"]

/** The attempt is over and a new one may be started with a retry. */
export const JOB_RETRYABLE: ReadonlySet<JobStatus> = new Set(["failed", "stopped", "canceled", "conflict", "needs_rebase"])
export const PLAN_STATUSES = ["pending", "running", "paused", "merging", "creating_pr", "completed", "failed", "canceled"] as const
export type PlanStatus = (typeof PLAN_STATUSES)[number]

/** Allowed plan transitions. The plan machine has cycles (paused <-> running). */
export const PLAN_TRANSITIONS: Readonly<Record<PlanStatus, readonly PlanStatus[]>> = {
  pending: ["running", "paused", "canceled", "failed"],
  running: ["paused", "merging", "creating_pr", "completed", "failed", "canceled"],
  paused: ["running", "canceled", "failed"],
  merging: ["running", "paused", "creating_pr", "completed", "failed", "canceled"],
  creating_pr: ["running", "paused", "completed", "failed", "canceled"],
  completed: [],
  failed: [],
  canceled: [],
}

/**
 * Plan status is written by one orchestrator (the lease holder) and by `cancel`, so conflicts are rare
 * (a cancel racing the orchestrator, or two orchestrators during a lease takeover). When they happen the
 * safer value wins: stopping beats going on, so a pause or a cancel is never silently undone.
 */
export const PLAN_CONFLICT_PRIORITY: Readonly<Record<PlanStatus, number>> = {
  pending: 0,
  running: 1,
  merging: 2,
  creating_pr: 3,
  paused: 4,
  completed: 5,
  failed: 6,
  canceled: 7,
}

export const PLAN_FINISHED: ReadonlySet<PlanStatus> = new Set(["completed", "failed", "canceled"])

export const CHECKPOINTS = ["approval", "on_error", "pre_merge", "pre_pr"] as const
export type CheckpointName = (typeof CHECKPOINTS)[number]

export const REPORT_STATUSES = ["working", "progress", "blocked", "needs_review", "completed", "failed"] as const
export type ReportStatus = (typeof REPORT_STATUSES)[number]

export function isJobStatus(s: unknown): s is JobStatus {
  return typeof s === "string" && (JOB_STATUSES as readonly string[]).includes(s)
}
export function isPlanStatus(s: unknown): s is PlanStatus {
  return typeof s === "string" && (PLAN_STATUSES as readonly string[]).includes(s)
}
export function isReportStatus(s: unknown): s is ReportStatus {
  return typeof s === "string" && (REPORT_STATUSES as readonly string[]).includes(s)
}

export function canJobTransition(from: JobStatus, to: JobStatus): boolean {
  return JOB_TRANSITIONS[from].includes(to)
}
export function canPlanTransition(from: PlanStatus, to: PlanStatus): boolean {
  return PLAN_TRANSITIONS[from].includes(to)
}
export function canAgentTransition(from: JobStatus, to: JobStatus): boolean {
  return JOB_AGENT_TRANSITIONS[from]?.includes(to) ?? false
}

function closure<S extends string>(edges: Readonly<Record<S, readonly S[]>>): Map<S, Set<S>> {
  const out = new Map<S, Set<S>>()
  for (const from of Object.keys(edges) as S[]) {
    const seen = new Set<S>()
    const stack = [...edges[from]]
    while (stack.length) {
      const s = stack.pop()!
      if (seen.has(s)) continue
      seen.add(s)
      stack.push(...(edges[s] ?? []))
    }
    out.set(from, seen)
  }
  return out
}
const JOB_REACH = closure(JOB_TRANSITIONS)

/** Can a sequence of allowed job transitions lead from `from` to `to` (within one attempt)? */
export function canJobReach(from: JobStatus, to: JobStatus): boolean {
  return JOB_REACH.get(from)?.has(to) ?? false
}
