/**
 * The status summary every front end shows (CLI `status`, `--json`, MCP, dashboard): the resolved plan
 * view joined with each job's latest report. Pure.
 */
import type { ReportRecord } from "./model.js"
import { countByStatus, findApproval, type PlanView } from "./plan.js"
import type { ReportDigest } from "./reports.js"
import { type JobStatus, PLAN_FINISHED, type PlanStatus } from "./states.js"

export interface JobSummary {
  name: string
  status: JobStatus
  attempt: number
  dependsOn: string[]
  exitCode: number | null
  signal: string | null
  error: string | null
  note: string | null
  skipped: boolean
  progress: number | null
  /** The current attempt's latest report. */
  lastReport: Pick<ReportRecord, "status" | "message" | "progress" | "at" | "by"> | null
  startedAt: number | null
  endedAt: number | null
  durationMs: number | null
  pid: number | null
  host: string | null
  log: string | null
  /** What the exit code or signal means, when it means more than "failed" (e.g. 127: command not found). */
  exitMeaning: string | null
  /** Running, but no output, report or heartbeat for longer than the plan's staleMs. */
  stale: boolean
  /** Concurrent status values that were resolved (empty without a conflict). */
  conflicted: JobStatus[]
}

export interface PlanSummary {
  id: string
  name: string
  mode: string
  status: string
  checkpoint: string | null
  checkpointContext: Record<string, unknown> | null
  checkpointSeq: number
  /** An approval for the current checkpoint is recorded and waits for the orchestrator to act on it. */
  approvedBy: string | null
  maxParallel: number
  createdAt: number
  completedAt: number | null
  lease: { holder: string; expiresAt: number } | null
  jobs: JobSummary[]
  counts: Partial<Record<JobStatus, number>>
  /** Git plans only: branches, the integration head, the merge queue and the pull request. */
  git?: {
    baseBranch: string | null
    integrationBranch: string
    head: string | null
    queue: { job: string; attempt: number; state: string; commit: string | null; files: string[]; reason: string | null }[]
    pr: { command: string; url: string | null; manual: string | null } | null
  }
}

export function summarize(id: string, view: PlanView, reports: Map<string, ReportDigest>, now: number, activity: Map<string, number> = new Map()): PlanSummary {
  // A finished plan waits for nothing: a checkpoint left over from before a cancel is not shown.
  const checkpoint = PLAN_FINISHED.has(view.status as PlanStatus) ? null : view.checkpoint
  const approval = checkpoint ? findApproval(view, checkpoint, view.checkpointSeq) : undefined
  return {
    id,
    name: view.name,
    mode: view.mode,
    status: view.status,
    checkpoint,
    checkpointContext: checkpoint ? view.checkpointContext : null,
    checkpointSeq: view.checkpointSeq,
    approvedBy: approval?.by ?? null,
    maxParallel: view.maxParallel,
    createdAt: view.createdAt,
    completedAt: view.completedAt,
    lease: view.lease && view.lease.expiresAt > now ? { holder: view.lease.holder, expiresAt: view.lease.expiresAt } : null,
    jobs: view.jobs.map(j => {
      const a = j.current
      const digest = reports.get(j.name)
      const forAttempt = digest?.byAttempt[String(a.n)]
      // The current attempt's latest report only: an earlier attempt's report is not this attempt's news.
      const last = forAttempt?.last ?? undefined
      const started = a.startedAt
      const end = a.endedAt ?? (j.status === "running" ? now : null)
      const lastSign = Math.max(started ?? 0, a.heartbeatAt ?? 0, last?.at ?? 0, activity.get(j.name) ?? 0)
      return {
        name: j.name,
        status: j.status,
        attempt: a.n,
        dependsOn: j.dependsOn,
        exitCode: a.exitCode,
        signal: a.signal,
        exitMeaning: j.status === "failed" || j.status === "stopped" ? explainExit(a.exitCode, a.signal) : null,
        error: j.status === "failed" || j.status === "stopped" || j.status === "canceled" || j.status === "conflict" ? a.reason : null,
        note: a.note,
        skipped: a.skipped,
        progress: forAttempt?.progress ?? null,
        lastReport: last ? { status: last.status, message: last.message, progress: last.progress, at: last.at, by: last.by } : null,
        startedAt: started,
        endedAt: a.endedAt,
        durationMs: started !== null && end !== null ? end - started : null,
        pid: a.pid,
        host: a.host,
        log: a.log,
        stale: j.status === "running" && lastSign > 0 && now - lastSign > view.staleMs,
        conflicted: a.conflicted,
      }
    }),
    counts: countByStatus(view),
    ...(view.git
      ? {
          git: {
            baseBranch: view.git.baseBranch,
            integrationBranch: view.git.integrationBranch,
            head: view.git.head,
            queue: view.git.queue.map(e => ({ job: e.job, attempt: e.attempt, state: e.state, commit: e.commit, files: e.files, reason: e.reason })),
            pr: view.git.prResult ? { command: view.git.prResult.command, url: view.git.prResult.url ?? null, manual: view.git.prResult.manual ?? null } : null,
          },
        }
      : {}),
  }
}

/** Something a human can do next at the plan's checkpoint (front ends render it as a command or a button). */
export interface NextStep {
  kind: "retry" | "skip" | "continue" | "approve"
  checkpoint: string
  job?: string
}

/** What can be done at this checkpoint: nothing when none is raised, it is already approved, or the plan is over. */
export function nextSteps(s: PlanSummary): NextStep[] {
  if (!s.checkpoint || s.approvedBy) return []
  const c = s.checkpointContext ?? {}
  const job = typeof c.jobName === "string" ? c.jobName : undefined
  if (s.checkpoint === "on_error" && job) {
    return [
      { kind: "retry", checkpoint: s.checkpoint, job },
      { kind: "skip", checkpoint: s.checkpoint, job },
      { kind: "continue", checkpoint: s.checkpoint },
    ]
  }
  return [{ kind: "approve", checkpoint: s.checkpoint }]
}

/**
 * What a plan's state means for a script waiting on it, with `concord run`'s exit codes: 0 completed,
 * 1 failed or canceled, 3 waiting at a checkpoint with no job running; null while it is still going.
 */
export function outcome(s: PlanSummary): { code: 0 | 1 | 3; why: string } | null {
  if (s.status === "completed") return { code: 0, why: "plan completed" }
  if (s.status === "failed" || s.status === "canceled") return { code: 1, why: `plan ${s.status}` }
  if (s.checkpoint && !s.approvedBy && !s.jobs.some(j => j.status === "running")) return { code: 3, why: `waiting at checkpoint ${s.checkpoint}` }
  return null
}

/** What a shell's exit code means, where it means more than "failed" (127: the command was not found). */
export function explainExit(code: number | null, signal: string | null = null): string | null {
  if (signal) return SIGNALS[signal] ?? null
  switch (code) {
    case 126:
      return "the command was found but could not be executed (permission denied or not executable)"
    case 127:
      return "command not found: check the job's run: line and its PATH"
    default:
      return code !== null && code > 128 && code < 160 ? (SIGNALS[`#${code - 128}`] ?? `killed by signal ${code - 128}`) : null
  }
}

const SIGNALS: Record<string, string> = {
  SIGKILL: "killed (SIGKILL): out of memory, or stopped by force",
  SIGTERM: "stopped (SIGTERM)",
  SIGINT: "interrupted (SIGINT)",
  SIGSEGV: "crashed (SIGSEGV)",
  "#9": "killed (SIGKILL): out of memory, or stopped by force",
  "#15": "stopped (SIGTERM)",
  "#2": "interrupted (SIGINT)",
  "#11": "crashed (SIGSEGV)",
}
