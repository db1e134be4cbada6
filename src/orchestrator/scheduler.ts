/**
 * The scheduler: a pure decision function. Plan state and what the runner observed go in; the actions
 * to take come out. No processes, no clocks, no I/O: `now` is an input. The runner (runner.ts) applies
 * the actions and calls `decide` again whenever the plan or a process changes, so every rule here is
 * written to be idempotent: an action is only proposed while the state still calls for it.
 *
 * Rules, in order:
 * - A canceled, failed or completed plan launches nothing; processes still alive are stopped.
 * - Approvals recorded in the document for the current checkpoint raise are acted on: "approval" and
 *   "on_error" resume the plan, "pre_merge" merges the job and resumes, "pre_pr" completes the plan.
 * - A pending plan starts running unless it waits at "approval" (copilot).
 * - Process exits become job statuses: exit 0 completes a running job (noting it did not report), a
 *   non-zero exit or a signal fails it, unless the job already reported completed (then only the exit
 *   code is recorded). Exits of old attempts are recorded on those attempts only.
 * - A job recorded running whose process is gone (and not supervised by this runner) failed with
 *   "process lost"; one whose process could not be started failed with failureKind launch_failed.
 * - A failed attempt raises on_error once (one checkpoint at a time), in every mode. In supervisor
 *   mode a completed attempt raises pre_merge once; when every job is done, pre_pr.
 * - A completed job whose process is still alive is stopped after the plan's grace period, counted from
 *   the durable time of its completed status, also when it is among the last jobs of the plan (the plan
 *   is recorded completed, and the runner stays until those grace periods end); a failed job's leftover
 *   processes likewise; a canceled or stopped job's process is stopped at once.
 * - While the plan is running (not paused), queued jobs whose dependencies are done start, in spec
 *   order, while fewer than maxParallel jobs are running (counted from job states, not a counter). Jobs
 *   whose dependencies are not done wait as waiting_deps. A dependency is done when completed (merged in
 *   supervisor mode) or skipped; dependents of a failed, stopped or canceled job never start on their own.
 * - When every job is done the plan completes; when nothing can run any more, the plan fails.
 */
import { type AttemptFields, findApproval, type JobView, type PlanView } from "../doc/plan.js"
import { type CheckpointName, JOB_RANK, type JobStatus, type PlanStatus } from "../doc/states.js"

/** Statuses that mean a job's attempt succeeded (a merge queue's refusal, `conflict`, is a failure). */
const DONE_AFTER_ALL: ReadonlySet<JobStatus> = new Set(["completed", "ready_to_merge", "merging", "merged"])

export interface ProcessExit {
  job: string
  attempt: number
  code: number | null
  signal: string | null
  at: number
  /** Why the runner stopped this process itself, if it did. */
  stoppedFor?: string
  /** Why the exit code is unknown (code and signal null), when a reason is known. */
  unknown?: string
}

export interface LaunchFailure {
  job: string
  attempt: number
  reason: string
}

export interface Observations {
  now: number
  /** Jobs whose process this runner supervises and which is still alive, by "job#attempt". */
  alive: ReadonlySet<string>
  /** Exits seen since the last decision (applied by the actions returned). */
  exits: readonly ProcessExit[]
  /** Jobs recorded running whose process is provably gone (no live group, no exit file). */
  lost: ReadonlySet<string>
  /** Attempts whose process could not be started (spawn error, missing directory). */
  launchFailed?: readonly LaunchFailure[]
}

export type Action =
  | { kind: "launch"; job: string; attempt: number }
  | { kind: "setJob"; job: string; attempt: number; to: JobStatus; fields: AttemptFields }
  | { kind: "record"; job: string; attempt: number; fields: AttemptFields; did?: string }
  | { kind: "stop"; job: string; attempt: number; reason: string }
  | { kind: "raise"; checkpoint: CheckpointName; context: Record<string, unknown>; cause?: { job: string; attempt: number } }
  | { kind: "clear"; checkpoint: CheckpointName; seq: number; approvedBy: string; why?: string }
  | { kind: "setPlan"; to: PlanStatus; reason: string }

export interface Decision {
  actions: Action[]
  /** Set when nothing more will happen without outside input: the exit code of `concord run`. */
  exit?: { code: 0 | 1 | 3; why: string }
}

export const key = (job: string, attempt: number) => `${job}#${attempt}`

/** Exit code and signal are both null for a process adopted after a restart: its exit code is unknown. */
function exitReason(e: ProcessExit): string {
  if (e.signal) return `killed by ${e.signal}`
  if (e.code === null) return e.unknown ? `ended; ${e.unknown}` : "exited while adopted after an orchestrator restart (exit code unknown)"
  return `exit code ${e.code}`
}
function exitKind(e: ProcessExit): string {
  return e.signal ? "signal" : e.code === null ? "exit_unknown" : "exit_code"
}

/**
 * Is a job in this status done for its dependents? In supervisor mode and in git plans (`repo:`) only
 * once merged: a git plan's dependents start from the integration branch with their dependencies' work.
 */
function isDone(status: JobStatus, skipped: boolean, mode: PlanView["mode"], git = false): boolean {
  return skipped || status === "merged" || (status === "completed" && mode !== "supervisor" && !git)
}

/** Has a completed job's grace period, counted from its durable completed status, ended? */
function graceOver(statusAt: number, graceMs: number, now: number): boolean {
  return now - statusAt >= graceMs
}

/** Git plans: a job on its way through the merge queue (the queue, not a process, moves it on). */
const IN_MERGE_QUEUE: ReadonlySet<JobStatus> = new Set(["completed", "ready_to_merge", "merging"])

/** A job that can never become done without a human (retry or skip). */
function isBlockedForever(j: JobView): boolean {
  return (
    !j.current.skipped && (j.status === "failed" || j.status === "stopped" || j.status === "canceled" || j.status === "conflict" || j.status === "needs_rebase")
  )
}

export function decide(view: PlanView, obs: Observations): Decision {
  const actions: Action[] = []
  const jobs = view.jobs
  const byName = new Map(jobs.map(j => [j.name, j]))
  const aliveOf = (j: JobView) => obs.alive.has(key(j.name, j.attempt))
  const anyAlive = obs.alive.size > 0

  // Exits first: they change job states that every later rule reads.
  const exited = new Set<string>()
  for (const e of obs.exits) {
    const j = byName.get(e.job)
    const a = j?.attempts.find(x => x.n === e.attempt)
    if (!j || !a) continue
    exited.add(key(e.job, e.attempt))
    const fields: AttemptFields = { endedAt: e.at }
    if (e.code !== null) fields.exitCode = e.code
    if (e.signal) fields.signal = e.signal
    if (a.status === "running") {
      if (e.code === 0) {
        actions.push({ kind: "setJob", job: e.job, attempt: e.attempt, to: "completed", fields: { ...fields, note: "exited 0 without reporting completed" } })
      } else {
        actions.push({ kind: "setJob", job: e.job, attempt: e.attempt, to: "failed", fields: { ...fields, reason: exitReason(e), failureKind: exitKind(e) } })
      }
    } else {
      if (e.stoppedFor) fields.note = `stopped by the orchestrator: ${e.stoppedFor}`
      actions.push({ kind: "record", job: e.job, attempt: e.attempt, fields })
    }
  }

  // Processes that could not be started.
  for (const f of obs.launchFailed ?? []) {
    const j = byName.get(f.job)
    const k = key(f.job, f.attempt)
    if (!j || exited.has(k) || j.attempts.find(x => x.n === f.attempt)?.status !== "running") continue
    actions.push({ kind: "setJob", job: f.job, attempt: f.attempt, to: "failed", fields: { reason: f.reason, failureKind: "launch_failed", endedAt: obs.now } })
    exited.add(k)
  }

  // Processes lost while no orchestrator watched them.
  for (const j of jobs) {
    const k = key(j.name, j.attempt)
    if (j.status === "running" && obs.lost.has(k) && !exited.has(k)) {
      actions.push({
        kind: "setJob",
        job: j.name,
        attempt: j.attempt,
        to: "failed",
        fields: { reason: "process lost", failureKind: "process_lost", endedAt: obs.now },
      })
      exited.add(k)
    }
  }
  // State after this round's exits, for the rules below.
  const statusOf = (j: JobView): JobStatus => {
    const a = actions.find(x => x.kind === "setJob" && x.job === j.name && x.attempt === j.attempt) as Extract<Action, { kind: "setJob" }> | undefined
    return a ? a.to : j.status
  }

  // A finished plan: stop what is left (a completed job's process once its grace period is over), then exit.
  if (view.status === "canceled" || view.status === "failed" || view.status === "completed") {
    for (const k of obs.alive) {
      const at = k.lastIndexOf("#")
      const job = k.slice(0, at)
      const n = Number(k.slice(at + 1))
      const j = byName.get(job)
      const a = j?.attempts.find(x => x.n === n)
      const st = j && a ? (n === j.attempt ? statusOf(j) : a.status) : undefined
      if (view.status === "completed" && j && a && n === j.attempt && st && JOB_RANK[st] >= JOB_RANK.completed) {
        if (graceOver(a.statusAt, view.graceMs, obs.now))
          actions.push({ kind: "stop", job, attempt: n, reason: `reported ${st}; grace period of ${view.graceMs} ms over` })
        continue
      }
      actions.push({ kind: "stop", job, attempt: n, reason: `plan ${view.status}` })
    }
    if (anyAlive) return { actions }
    return { actions, exit: { code: view.status === "completed" ? 0 : 1, why: `plan ${view.status}` } }
  }

  // Stop processes that should not run any more.
  for (const j of jobs) {
    for (const a of j.attempts) {
      const k = key(j.name, a.n)
      if (!obs.alive.has(k) || exited.has(k)) continue
      const st = a.n === j.attempt ? statusOf(j) : a.status
      if (a.n !== j.attempt) actions.push({ kind: "stop", job: j.name, attempt: a.n, reason: "superseded by a newer attempt" })
      else if (st === "canceled" || st === "stopped") actions.push({ kind: "stop", job: j.name, attempt: a.n, reason: `job ${st}` })
      else if (JOB_RANK[st] >= JOB_RANK.failed && graceOver(a.statusAt, view.graceMs, obs.now))
        actions.push({ kind: "stop", job: j.name, attempt: a.n, reason: `reported ${st}; grace period of ${view.graceMs} ms over` })
    }
  }

  // Approvals of the current checkpoint.
  let status = view.status
  let checkpoint = view.checkpoint
  if (checkpoint) {
    const approval = findApproval(view, checkpoint, view.checkpointSeq)
    if (approval) {
      if (checkpoint === "pre_merge") {
        const jobName = view.checkpointContext?.jobName
        const j = typeof jobName === "string" ? byName.get(jobName) : undefined
        // A git plan's approved job enters the merge queue instead (src/doc/merge.ts mergeCandidates).
        if (j && statusOf(j) === "completed" && !view.git) actions.push({ kind: "setJob", job: j.name, attempt: j.attempt, to: "merged", fields: {} })
      }
      actions.push({ kind: "clear", checkpoint, seq: view.checkpointSeq, approvedBy: approval.by })
      if (checkpoint === "pre_pr") {
        actions.push({ kind: "setPlan", to: "completed", reason: `approved by ${approval.by}` })
        return { actions }
      }
      status = status === "pending" || status === "paused" ? "running" : status
      checkpoint = null
    }
  }
  // An on_error whose job is done after all has nothing left to decide: its completed report and the
  // record of its failure crossed (a process killed as it reported; completed outranks failed when they
  // merge). The checkpoint is cleared and the plan resumes, as if approved.
  if (checkpoint === "on_error") {
    const ctx = view.checkpointContext
    const j = typeof ctx?.jobName === "string" ? byName.get(ctx.jobName) : undefined
    if (j && j.attempt === ctx?.attempt && DONE_AFTER_ALL.has(statusOf(j))) {
      actions.push({
        kind: "clear",
        checkpoint,
        seq: view.checkpointSeq,
        approvedBy: "concord",
        why: `job ${j.name} #${j.attempt} is ${statusOf(j)} after all`,
      })
      status = status === "paused" ? "running" : status
      checkpoint = null
    }
  }
  if (status === "pending" && !checkpoint) {
    actions.push({ kind: "setPlan", to: "running", reason: "started" })
    status = "running"
  }

  // Raise checkpoints for failures (every mode) and, in supervisor mode, completions: one at a time.
  if (!checkpoint) {
    for (const j of jobs) {
      const st = statusOf(j)
      const a = j.current
      if (a.skipped) continue
      // Raised once per attempt; but in supervisor mode the attempt's seq is its pre_merge, and a refusal by
      // the queue after that approval still needs its on_error.
      const preMergeOnly = a.checkpointSeq !== null && view.approvals.some(x => x.checkpoint === "pre_merge" && x.seq === a.checkpointSeq)
      if (a.checkpointSeq !== null && !(view.git && st === "conflict" && preMergeOnly)) continue
      // In a git plan a job the merge queue refused (conflict, failed test, touchSet) is a failure too.
      if (st === "failed" || (view.git && st === "conflict")) {
        const refused = st === "conflict"
        const exit = refused ? undefined : obs.exits.find(e => e.job === j.name && e.attempt === a.n)
        const set = actions.find(x => x.kind === "setJob" && x.job === j.name && x.attempt === a.n && x.to === "failed") as
          | Extract<Action, { kind: "setJob" }>
          | undefined
        const exitCode = exit?.code ?? a.exitCode
        const failureKind = set?.fields.failureKind ?? (exit ? exitKind(exit) : (a.failureKind ?? "failed"))
        const message = set?.fields.reason ?? (exit ? exitReason(exit) : (a.reason ?? "failed"))
        actions.push({
          kind: "raise",
          checkpoint: "on_error",
          context: { jobName: j.name, attempt: a.n, failureKind, exitCode: exitCode ?? null, message },
          cause: { job: j.name, attempt: a.n },
        })
        checkpoint = "on_error"
        break
      }
      if (view.mode === "supervisor" && st === "completed") {
        actions.push({
          kind: "raise",
          checkpoint: "pre_merge",
          context: { jobName: j.name, attempt: a.n, reason: "job completed; approve to merge it" },
          cause: { job: j.name, attempt: a.n },
        })
        checkpoint = "pre_merge"
        break
      }
    }
  }

  const doneNow = (j: JobView) => isDone(statusOf(j), j.current.skipped, view.mode, !!view.git)

  // Launch what is ready.
  const launched = new Set<string>()
  if (status === "running" && !checkpoint) {
    let running = jobs.filter(j => statusOf(j) === "running").length
    for (const j of jobs) {
      const st = statusOf(j)
      if (st !== "queued" && st !== "waiting_deps") continue
      const depsDone = j.dependsOn.every(d => {
        const dj = byName.get(d)
        return !!dj && doneNow(dj)
      })
      if (depsDone && running < view.maxParallel) {
        actions.push({ kind: "launch", job: j.name, attempt: j.attempt })
        launched.add(j.name)
        running++
      } else if (!depsDone && st === "queued") {
        actions.push({ kind: "setJob", job: j.name, attempt: j.attempt, to: "waiting_deps", fields: {} })
      }
    }
  }

  // All done?
  const allDone = jobs.every(doneNow)
  if (status === "running" && !checkpoint && allDone) {
    if (view.mode === "supervisor" && !view.approvals.some(a => a.checkpoint === "pre_pr")) {
      actions.push({ kind: "raise", checkpoint: "pre_pr", context: { reason: "every job is merged; approve to complete the plan" } })
      checkpoint = "pre_pr"
    } else if (!anyAlive || jobs.every(j => !aliveOf(j) || JOB_RANK[statusOf(j)] >= JOB_RANK.completed)) {
      actions.push({ kind: "setPlan", to: "completed", reason: "every job is done" })
      return { actions }
    }
  }

  const somethingRunning = jobs.some(j => statusOf(j) === "running") || launched.size > 0
  // Nothing can make progress any more: fail the plan.
  if (status === "running" && !checkpoint && !somethingRunning && !allDone) {
    const progressPossible = jobs.some(j => {
      const st = statusOf(j)
      if (view.git && IN_MERGE_QUEUE.has(st) && !j.current.skipped) return true
      if (st !== "queued" && st !== "waiting_deps") return false
      return j.dependsOn.every(d => !blockedTransitively(d, byName, new Set()))
    })
    if (!progressPossible) {
      const blockers = jobs.filter(isBlockedForever).map(j => `${j.name} ${j.status}`)
      actions.push({ kind: "setPlan", to: "failed", reason: `no job can run any more (${blockers.join(", ") || "blocked"})` })
      return { actions }
    }
  }

  // Waiting at a checkpoint with nothing running: a human must act.
  if (checkpoint && !somethingRunning && !anyAlive && !actions.some(a => a.kind === "clear")) {
    return { actions, exit: { code: 3, why: `waiting at checkpoint ${checkpoint}` } }
  }
  return { actions }
}

function blockedTransitively(name: string, byName: Map<string, JobView>, seen: Set<string>): boolean {
  if (seen.has(name)) return false
  seen.add(name)
  const j = byName.get(name)
  if (!j) return true
  if (isBlockedForever(j)) return true
  return j.dependsOn.some(d => blockedTransitively(d, byName, seen))
}
