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
export type Stored<T> = T extends string ? T | { val: string } : T extends (infer U)[] ? Stored<U>[] : T extends object ? { [K in keyof T]: Stored<T[K]> } : T

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
  /** Git plans: the attempt's worktree (absolute path on `host`), its branch, and the commit it started from. */
  worktree?: string
  branch?: string
  baseCommit?: string
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
  /** Git plans: globs of the files the job may change (absent = any). */
  touchSet?: string[]
  /** Git plans: how the job's worktree is prepared. */
  setup?: { copyFiles: string[]; symlinkDirs: string[]; commands: string[] }
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

/**
 * The merge queue of a git plan (merge.ts). An entry is one completed job attempt waiting to be merged
 * into the integration branch: created once, then mutated field by field. Its state is a scalar in
 * `GitRecord.queueState`, resolved by rank like a job status.
 */
export interface MergeEntryRecord {
  job: string
  attempt: number
  /** Queue order. */
  seq: number
  enqueuedAt: number
  enqueuedBy: string
  /** The job branch merged. */
  branch: string
  /** Integration head the scratch merge was built on. */
  scratchBase?: string
  startedAt?: number
  /** The tested merge commit (passed), or the commit whose test failed. */
  commit?: string
  /** Conflicting files, or files outside the touchSet. */
  files?: string[]
  /** Tail of the test output (test_failed). */
  output?: string
  reason?: string
  finishedAt?: number
}

export interface PrRecord {
  /** The exact commands (push, gh pr create) as one shell line. */
  command: string
  /** Set when `gh pr create` ran and printed the PR's address. */
  url?: string
  /** Why the PR was not opened automatically (no gh, not authenticated, no remote, push failed). */
  manual?: string
  at: number
  by: string
}

export interface GitRecord {
  repo: string
  /** Null until the first run records the repository's current branch. */
  baseBranch: string | null
  integrationBranch: string
  test: string | null
  pr: { title?: string; body?: string; draft: boolean }
  /** The base branch's commit when the plan first ran. */
  baseCommit: string | null
  /** The integration branch's commit as the queue last moved it: only ever a commit whose test passed. */
  head: string | null
  queue: Record<string, MergeEntryRecord>
  queueState: Record<string, string>
  prResult: PrRecord | null
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
  /** Git worktrees and the merge queue: present only for plans with `repo:`. */
  git?: GitRecord
}

export interface ReportRecord {
  status: ReportStatus
  message: string
  progress: number | null
  at: number
  by: string
  attempt: number
  /**
   * The sender's id for this report (a random string), when it may send it twice: a report sent to
   * `concord run`'s endpoint and sent again to the store after the endpoint died is stored once.
   */
  rid?: string
}

export interface ReportsDoc {
  kind: typeof REPORTS_KIND
  plan: string
  job: string
  reports: ReportRecord[]
}
