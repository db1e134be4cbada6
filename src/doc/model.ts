/**
 * The shape of concord's Automerge documents.
 *
 * Plan document: every plan-level field is its own key; jobs live in a map keyed by name; each job keeps
 * one record per attempt (`attempts["1"]`, `attempts["2"]`, ...), and a status belongs to an attempt. Job
 * and attempt objects are created once and then mutated field by field, never replaced or deleted, so a
 * concurrent edit of another field always merges. Approvals are an append-only map keyed by unique ids.
 *
 * Reports live in a separate document per job (reports.ts), so high-frequency progress never makes the
 * plan document slow to load.
 *
 * Strings are stored as Automerge ImmutableString (one atomic op, not collaborative text); the read
 * functions hand back plain strings.
 */
import type { CheckpointName, JobStatus, PlanStatus, ReportStatus } from "./states.js"
import type { PlanMode } from "./spec.js"

export const PLAN_KIND = "concord/plan"
export const REPORTS_KIND = "concord/reports"
export const SCHEMA_VERSION = 1

/** A value as stored: strings may come back as ImmutableString objects. */
export type Stored<T> = T extends string
  ? T | { val: string }
  : T extends (infer U)[]
    ? Stored<U>[]
    : T extends object
      ? { [K in keyof T]: Stored<T[K]> }
      : T

/** Facts about one attempt. Its status lives in JobRecord.status (see there). */
export interface AttemptRecord {
  n: number
  statusAt: number
  statusBy: string
  createdAt: number
  createdBy: string
  /** Why the attempt failed, stopped or was canceled. */
  reason?: string
  failureKind?: string
  host?: string
  pid?: number
  /** Process start time (ms since epoch) as seen by the runner: tells a live pid from a reused one. */
  pidStartedAt?: number
  startedAt?: number
  endedAt?: number
  exitCode?: number
  signal?: string
  /** Path of the attempt's stdout+stderr log, relative to the store. */
  log?: string
  /** Set when the process exited 0 without reporting. */
  note?: string
  heartbeatAt?: number
  /** The checkpoint raise this attempt caused (on_error for a failure, pre_merge for a completion). */
  checkpointSeq?: number
}

export interface JobRecord {
  name: string
  index: number
  run: string
  prompt?: string
  dependsOn: string[]
  env: Record<string, string>
  cwd?: string
  /** Status per attempt number ("1", "2", ...): scalars, so concurrent writes are plain conflicts. */
  status: Record<string, JobStatus>
  /** Attempts that were skipped (canceled on purpose; dependents go on without them). */
  skipped: Record<string, boolean>
  attempts: Record<string, AttemptRecord>
}

export interface ApprovalRecord {
  id: string
  /** The checkpoint approved, and the raise it answers (checkpointSeq at the time). */
  checkpoint: CheckpointName
  seq: number
  by: string
  at: number
  /** pre_merge approvals name the job they release. */
  job?: string
}

export interface LeaseRecord {
  holder: string
  host: string
  pid: number
  acquiredAt: number
  expiresAt: number
}

export interface PlanDoc {
  kind: typeof PLAN_KIND
  schema: number
  name: string
  mode: PlanMode
  maxParallel: number
  graceMs: number
  staleMs: number
  createdAt: number
  createdBy: string
  /** Directory the plan file was created from: relative job cwds resolve against it. */
  baseDir: string
  status: PlanStatus
  statusAt: number
  statusBy: string
  checkpoint: CheckpointName | null
  checkpointContext: Record<string, unknown> | null
  /** Incremented on every checkpoint raise; approvals name the raise they answer. */
  checkpointSeq: number
  checkpointAt: number | null
  completedAt: number | null
  approvals: Record<string, ApprovalRecord>
  lease: LeaseRecord | null
  jobs: Record<string, JobRecord>
}

export interface ReportRecord {
  status: ReportStatus
  message: string
  progress: number | null
  at: number
  by: string
  attempt: number
}

export interface ReportsDoc {
  kind: typeof REPORTS_KIND
  plan: string
  job: string
  reports: ReportRecord[]
}
