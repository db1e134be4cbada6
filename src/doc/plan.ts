/**
 * Typed reads and writes over a plan document. Pure: every write takes a document and a WriteContext
 * (who, when) and returns the new document; it validates against the resolved view first and throws a
 * typed error, writing nothing, when the change is not allowed.
 */
import * as A from "@automerge/automerge"
import { changeOptions, type WriteContext } from "./actor.js"
import { InputError, InvalidTransitionError, NotFoundError } from "./errors.js"
import { type ApprovalRecord, type AttemptRecord, type GitRecord, type JobRecord, type LeaseRecord, PLAN_KIND, type PlanDoc, SCHEMA_VERSION } from "./model.js"
import { type GitView, newGitRecord, readGit } from "./merge.js"
import { conflictValues, plain, resolveCheckpoint, resolveJobStatus, resolveMax, resolvePlanStatus, str } from "./resolve.js"
import type { PlanMode, PlanSpec } from "./spec.js"
import { canJobTransition, canPlanTransition, type CheckpointName, JOB_RANK, JOB_RETRYABLE, type JobStatus, type PlanStatus } from "./states.js"

export type PlanDocument = A.Doc<PlanDoc>

const imm = (s: string) => new A.ImmutableString(s)

/**
 * Write a contested key so that the write is always a new operation. Automerge elides a put of the value
 * the key already shows (its default winner), which would leave a concurrent conflict unresolved and let
 * the resolution keep picking the other value. Deleting first makes the put real.
 */
export function put(target: object, key: string, value: string | null): void {
  const t = target as Record<string, unknown>
  if (key in t) delete t[key]
  t[key] = value === null ? null : imm(value)
}

/* ------------------------------------------------------------------ views */

export interface AttemptView {
  n: number
  status: JobStatus
  /** Concurrent values the status had before resolution (empty when there was no conflict). */
  conflicted: JobStatus[]
  statusAt: number
  statusBy: string
  createdAt: number
  createdBy: string
  reason: string | null
  failureKind: string | null
  host: string | null
  pid: number | null
  pidStartedAt: number | null
  startedAt: number | null
  endedAt: number | null
  exitCode: number | null
  signal: string | null
  log: string | null
  note: string | null
  skipped: boolean
  heartbeatAt: number | null
  /** The checkpoint raise this attempt caused (on_error for a failure, pre_merge for a completion). */
  checkpointSeq: number | null
  /** Git plans: worktree path, branch and starting commit of the attempt. */
  worktree: string | null
  branch: string | null
  baseCommit: string | null
}

export interface JobView {
  name: string
  index: number
  run: string
  prompt: string | null
  dependsOn: string[]
  env: Record<string, string>
  cwd: string | null
  /** Current attempt number: the highest attempt recorded. */
  attempt: number
  status: JobStatus
  current: AttemptView
  attempts: AttemptView[]
  /** Git plans: globs of the files the job may change (null = any). */
  touchSet: string[] | null
  setup: { copyFiles: string[]; symlinkDirs: string[]; commands: string[] } | null
}

/** The plan as read: the document's plan-level fields, with approvals as a list and the jobs resolved. */
export interface PlanView extends Omit<PlanDoc, "kind" | "schema" | "approvals" | "jobs" | "git"> {
  approvals: ApprovalRecord[]
  jobs: JobView[]
  /** Git plans only (merge.ts readGit has the queue). */
  git: GitView | null
}

const num = (v: unknown): number | null => (typeof v === "number" ? v : null)

function attemptView(job: Record<string, unknown>, key: string): AttemptView {
  const { status, conflicted } = resolveJobStatus(job.status, key)
  const a = ((job.attempts as Record<string, Record<string, unknown>>)[key] ?? {}) as Record<string, unknown>
  return {
    n: Number(key),
    status,
    conflicted,
    statusAt: num(a.statusAt) ?? 0,
    statusBy: str(a.statusBy) ?? "",
    createdAt: num(a.createdAt) ?? 0,
    createdBy: str(a.createdBy) ?? "",
    reason: str(a.reason) ?? null,
    failureKind: str(a.failureKind) ?? null,
    host: str(a.host) ?? null,
    pid: num(a.pid),
    pidStartedAt: num(a.pidStartedAt),
    startedAt: num(a.startedAt),
    endedAt: num(a.endedAt),
    exitCode: num(a.exitCode),
    signal: str(a.signal) ?? null,
    log: str(a.log) ?? null,
    note: str(a.note) ?? null,
    skipped: (job.skipped as Record<string, unknown> | undefined)?.[key] === true,
    heartbeatAt: num(a.heartbeatAt),
    checkpointSeq: num(a.checkpointSeq),
    worktree: str(a.worktree) ?? null,
    branch: str(a.branch) ?? null,
    baseCommit: str(a.baseCommit) ?? null,
  }
}

function jobView(j: Record<string, unknown>): JobView {
  const keys = new Set([...Object.keys(j.status as object), ...Object.keys(j.attempts as object)])
  const attempts = [...keys].sort((a, b) => Number(a) - Number(b)).map(k => attemptView(j, k))
  const current = attempts[attempts.length - 1]
  return {
    name: str(j.name)!,
    index: j.index as number,
    run: str(j.run)!,
    prompt: str(j.prompt) ?? null,
    dependsOn: plain<string[]>(j.dependsOn) ?? [],
    env: plain<Record<string, string>>(j.env) ?? {},
    cwd: str(j.cwd) ?? null,
    attempt: current.n,
    status: current.status,
    current,
    attempts,
    touchSet: j.touchSet ? plain<string[]>(j.touchSet) : null,
    setup: j.setup ? plain<{ copyFiles: string[]; symlinkDirs: string[]; commands: string[] }>(j.setup) : null,
  }
}

export function isPlanDoc(doc: unknown): doc is PlanDocument {
  return !!doc && typeof doc === "object" && str((doc as Record<string, unknown>).kind) === PLAN_KIND
}

/** A plan's name, without reading the rest of it (readPlan resolves every job: costly for big plans). */
export function planName(doc: PlanDocument): string {
  return str((doc as unknown as Record<string, unknown>).name) ?? ""
}

/** The resolved, plain view of a plan document that every front end reads. */
export function readPlan(doc: PlanDocument): PlanView {
  const d = doc as unknown as Record<string, unknown>
  const { status } = resolvePlanStatus(d)
  const { checkpoint, context } = resolveCheckpoint(d)
  const jobs = Object.values(d.jobs as Record<string, Record<string, unknown>>)
    .map(jobView)
    .sort((a, b) => a.index - b.index)
  const approvals = Object.values(plain<Record<string, ApprovalRecord>>(d.approvals) ?? {}).sort((a, b) => a.at - b.at || a.id.localeCompare(b.id))
  return {
    name: str(d.name)!,
    mode: str(d.mode) as PlanMode,
    maxParallel: d.maxParallel as number,
    graceMs: d.graceMs as number,
    staleMs: d.staleMs as number,
    createdAt: d.createdAt as number,
    createdBy: str(d.createdBy) ?? "",
    baseDir: str(d.baseDir) ?? ".",
    status,
    statusAt: num(d.statusAt) ?? 0,
    statusBy: str(d.statusBy) ?? "",
    checkpoint,
    checkpointContext: context,
    checkpointSeq: resolveMax(d, "checkpointSeq"),
    checkpointAt: num(d.checkpointAt),
    completedAt: num(d.completedAt),
    approvals,
    lease: plain<LeaseRecord | null>(d.lease) ?? null,
    jobs,
    git: readGit(d.git),
  }
}

export function getJob(view: PlanView, name: string): JobView {
  const job = view.jobs.find(j => j.name === name)
  if (!job) {
    const known = view.jobs.map(j => j.name).join(", ")
    throw new NotFoundError(`plan "${view.name}" has no job "${name}" (jobs: ${known})`)
  }
  return job
}

/**
 * One job of a plan document, resolved as readPlan resolves it, without resolving the others (a report
 * to a 1,000-job plan needs one job, not a thousand). Throws like getJob for an unknown job.
 */
export function readJob(doc: PlanDocument, name: string): JobView {
  const jobs = (doc as unknown as { jobs: Record<string, Record<string, unknown>> }).jobs
  const j = Object.hasOwn(jobs, name) ? jobs[name] : undefined
  if (!j || str(j.name) !== name) {
    const known = Object.values(jobs)
      .sort((a, b) => (a.index as number) - (b.index as number))
      .map(x => str(x.name))
      .join(", ")
    throw new NotFoundError(`plan "${planName(doc)}" has no job "${name}" (jobs: ${known})`)
  }
  return jobView(j)
}

/** Counts of jobs by (resolved, current-attempt) status. */
export function countByStatus(view: PlanView): Partial<Record<JobStatus, number>> {
  const counts: Partial<Record<JobStatus, number>> = {}
  for (const j of view.jobs) counts[j.status] = (counts[j.status] ?? 0) + 1
  return counts
}

/** The approval recorded for this checkpoint raise (seq), if any. */
export function findApproval(view: PlanView, checkpoint: CheckpointName, seq: number): ApprovalRecord | undefined {
  return view.approvals.find(a => a.checkpoint === checkpoint && a.seq === seq)
}

/* ----------------------------------------------------------------- writes */

function change(doc: PlanDocument, ctx: WriteContext, did: string, fn: (d: PlanDoc) => void): PlanDocument {
  return A.change(doc, changeOptions(ctx, did), fn)
}

export interface CreatePlanOptions {
  /** Directory relative job `cwd`s resolve against (the plan file's directory). */
  baseDir: string
  /** Optional actor id (hex) for the new document. */
  actor?: string
}

/** A new plan document from a validated spec. */
export function createPlan(spec: PlanSpec, opts: CreatePlanOptions, ctx: WriteContext): PlanDocument {
  const init = A.init<PlanDoc>(opts.actor ? { actor: opts.actor as A.ActorId } : undefined)
  return change(init, ctx, `create plan "${spec.name}" with ${spec.jobs.length} jobs`, d => {
    d.kind = imm(PLAN_KIND) as unknown as typeof PLAN_KIND
    d.schema = SCHEMA_VERSION
    d.name = imm(spec.name) as unknown as string
    d.mode = imm(spec.mode) as unknown as PlanMode
    d.maxParallel = spec.maxParallel
    d.graceMs = spec.graceMs
    d.staleMs = spec.staleMs
    d.createdAt = ctx.now
    d.createdBy = imm(ctx.by) as unknown as string
    d.baseDir = imm(opts.baseDir) as unknown as string
    d.status = imm("pending") as unknown as PlanStatus
    d.statusAt = ctx.now
    d.statusBy = imm(ctx.by) as unknown as string
    // A copilot plan waits for a human before anything runs: that wait is checkpoint "approval".
    const waits = spec.mode === "copilot"
    d.checkpoint = (waits ? imm("approval") : null) as unknown as CheckpointName | null
    d.checkpointContext = waits ? ({ checkpoint: imm("approval"), reason: imm("copilot plans wait for approval") } as unknown as Record<string, unknown>) : null
    d.checkpointSeq = waits ? 1 : 0
    d.checkpointAt = waits ? ctx.now : null
    d.completedAt = null
    d.approvals = {}
    d.lease = null
    d.jobs = {}
    if (spec.git) d.git = newGitRecord(spec.git) as GitRecord
    spec.jobs.forEach((j, index) => {
      const job: Record<string, unknown> = {
        name: imm(j.name),
        index,
        run: imm(j.run),
        dependsOn: j.dependsOn.map(imm),
        env: Object.fromEntries(Object.entries(j.env).map(([k, v]) => [k, imm(v)])),
        status: { "1": imm("queued") },
        skipped: {},
        attempts: { "1": newAttempt(1, ctx) },
      }
      if (j.prompt !== undefined) job.prompt = imm(j.prompt)
      if (j.cwd !== undefined) job.cwd = imm(j.cwd)
      if (spec.git && j.touchSet) job.touchSet = j.touchSet.map(imm)
      if (spec.git && j.setup) job.setup = toStored(j.setup)
      d.jobs[j.name] = job as unknown as JobRecord
    })
  })
}

function newAttempt(n: number, ctx: WriteContext, extra: Record<string, unknown> = {}): AttemptRecord {
  return {
    n,
    statusAt: ctx.now,
    statusBy: imm(ctx.by),
    createdAt: ctx.now,
    createdBy: imm(ctx.by),
    ...extra,
  } as unknown as AttemptRecord
}

/** Fields of an attempt that front ends may set along with (or without) a status change. */
export type AttemptFields = Partial<Omit<AttemptRecord, "n" | "statusAt" | "statusBy" | "createdAt" | "createdBy" | "checkpointSeq">>

function writeFields(target: Record<string, unknown>, fields: AttemptFields) {
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue
    target[k] = typeof v === "string" ? imm(v) : v
  }
}

/** The facts record of an attempt, created on first write if a concurrent retry's record won the key. */
function storedAttempt(d: PlanDoc, job: string, attempt: number): Record<string, unknown> {
  const attempts = d.jobs[job].attempts as Record<string, unknown>
  const key = String(attempt)
  if (!attempts[key]) attempts[key] = { n: attempt }
  return attempts[key] as Record<string, unknown>
}

/** Set an attempt's status (and who/when), as a real new operation on the job's status map. */
function writeStatus(d: PlanDoc, job: string, attempt: number, to: JobStatus, ctx: WriteContext): Record<string, unknown> {
  put(d.jobs[job].status, String(attempt), to)
  const a = storedAttempt(d, job, attempt)
  a.statusAt = ctx.now
  a.statusBy = imm(ctx.by)
  return a
}

function attemptOf(job: JobView, attempt?: number): AttemptView {
  if (attempt === undefined) return job.current
  const a = job.attempts.find(x => x.n === attempt)
  if (!a) throw new NotFoundError(`job "${job.name}" has no attempt ${attempt} (current is ${job.attempt})`)
  return a
}

export interface SetJobStatusOptions extends AttemptFields {
  /** Attempt to change; defaults to the current one. Writes for an old attempt never touch the current. */
  attempt?: number
}

/** Move one attempt of a job to a new status. Throws InvalidTransitionError (nothing written) if not allowed. */
export function setJobStatus(doc: PlanDocument, jobName: string, to: JobStatus, opts: SetJobStatusOptions, ctx: WriteContext): PlanDocument {
  const job = readJob(doc, jobName)
  const { attempt: attemptNo, ...fields } = opts
  const attempt = attemptOf(job, attemptNo)
  if (!canJobTransition(attempt.status, to)) {
    throw new InvalidTransitionError(`job "${jobName}" attempt ${attempt.n}`, attempt.status, to)
  }
  const detail = [fields.exitCode !== undefined ? `exit ${fields.exitCode}` : "", fields.signal ?? "", fields.reason ?? ""].filter(Boolean).join(", ")
  return change(doc, ctx, `job ${jobName} #${attempt.n}: ${attempt.status} -> ${to}${detail ? ` (${detail})` : ""}`, d => {
    writeFields(writeStatus(d, jobName, attempt.n, to, ctx), fields)
  })
}

/** Record facts about an attempt (pid, log path, exit code, heartbeat) without changing its status. */
export function updateAttempt(doc: PlanDocument, jobName: string, attemptNo: number, fields: AttemptFields, ctx: WriteContext, did?: string): PlanDocument {
  const job = readJob(doc, jobName)
  attemptOf(job, attemptNo)
  const keys = Object.keys(fields).filter(k => (fields as Record<string, unknown>)[k] !== undefined)
  return change(doc, ctx, did ?? `job ${jobName} #${attemptNo}: record ${keys.join(", ")}`, d => {
    writeFields(storedAttempt(d, jobName, attemptNo), fields)
  })
}

/** Start a new attempt of a job whose current attempt is over (failed, stopped, canceled, ...). */
export function retryJob(doc: PlanDocument, jobName: string, ctx: WriteContext): PlanDocument {
  const job = readJob(doc, jobName)
  if (!JOB_RETRYABLE.has(job.status)) {
    throw new InvalidTransitionError(
      `job "${jobName}" attempt ${job.attempt}`,
      job.status,
      "retry",
      `only ${[...JOB_RETRYABLE].join(", ")} jobs can be retried`
    )
  }
  const n = job.attempt + 1
  return change(doc, ctx, `job ${jobName}: retry as attempt ${n}`, d => {
    put(d.jobs[jobName].status, String(n), "queued")
    ;(d.jobs[jobName].attempts as Record<string, AttemptRecord>)[String(n)] = newAttempt(n, ctx)
  })
}

/**
 * Skip a job: it will not run, and its dependents treat it as done ("continue without it"). An attempt
 * that has not finished is canceled in place; a finished one (failed, stopped, ...) gets a new attempt
 * record that is canceled and marked skipped, so no status ever moves backwards.
 */
export function skipJob(doc: PlanDocument, jobName: string, ctx: WriteContext, reason = "skipped"): PlanDocument {
  const job = readJob(doc, jobName)
  if (job.current.skipped) return doc
  if (canJobTransition(job.status, "canceled")) {
    return change(doc, ctx, `job ${jobName} #${job.attempt}: ${job.status} -> canceled (skipped)`, d => {
      writeStatus(d, jobName, job.attempt, "canceled", ctx).reason = imm(reason)
      d.jobs[jobName].skipped[String(job.attempt)] = true
    })
  }
  if (JOB_RETRYABLE.has(job.status)) {
    const n = job.attempt + 1
    return change(doc, ctx, `job ${jobName}: skipped (attempt ${n} canceled)`, d => {
      put(d.jobs[jobName].status, String(n), "canceled")
      d.jobs[jobName].skipped[String(n)] = true
      ;(d.jobs[jobName].attempts as Record<string, AttemptRecord>)[String(n)] = newAttempt(n, ctx, { reason: imm(reason) })
    })
  }
  throw new InvalidTransitionError(`job "${jobName}" attempt ${job.attempt}`, job.status, "skipped", "it is already done")
}

/** Change the plan status (validated against the plan state machine). */
export function setPlanStatus(doc: PlanDocument, to: PlanStatus, ctx: WriteContext, extra: { completedAt?: number; reason?: string } = {}): PlanDocument {
  const view = readPlan(doc)
  if (view.status === to) return doc
  if (!canPlanTransition(view.status, to)) throw new InvalidTransitionError(`plan "${view.name}"`, view.status, to)
  return change(doc, ctx, `plan: ${view.status} -> ${to}${extra.reason ? ` (${extra.reason})` : ""}`, d => {
    put(d, "status", to)
    d.statusAt = ctx.now
    d.statusBy = imm(ctx.by) as unknown as string
    if (extra.completedAt !== undefined) d.completedAt = extra.completedAt
  })
}

/**
 * Pause the plan at a checkpoint. A pending plan stays pending (it is waiting for approval anyway);
 * otherwise it becomes paused. Each raise gets a new sequence number that approvals refer to.
 */
export function raiseCheckpoint(
  doc: PlanDocument,
  checkpoint: CheckpointName,
  context: Record<string, unknown>,
  ctx: WriteContext,
  /** The job attempt that caused the raise: it records the raise's seq, so it is raised only once. */
  cause?: { job: string; attempt: number }
): PlanDocument {
  const view = readPlan(doc)
  if (cause) attemptOf(getJob(view, cause.job), cause.attempt)
  // Always (re)write the status, even when already paused: a concurrent resume must meet a concurrent
  // value here so that the conflict resolves to the pause.
  // A copilot plan's "approval" wait keeps it pending; every other checkpoint pauses the plan.
  const toPaused = !(checkpoint === "approval" && view.status === "pending")
  if (toPaused && view.status !== "paused" && !canPlanTransition(view.status, "paused")) {
    throw new InvalidTransitionError(`plan "${view.name}"`, view.status, "paused")
  }
  const seq = view.checkpointSeq + 1
  return change(doc, ctx, `plan: checkpoint ${checkpoint} #${seq}${context.jobName ? ` (job ${context.jobName})` : ""}`, d => {
    put(d, "status", toPaused ? "paused" : "pending")
    d.statusAt = ctx.now
    d.statusBy = imm(ctx.by) as unknown as string
    put(d, "checkpoint", checkpoint)
    d.checkpointContext = toStored({ checkpoint, ...context }) as Record<string, unknown>
    d.checkpointSeq = seq
    d.checkpointAt = ctx.now
    if (cause) storedAttempt(d, cause.job, cause.attempt).checkpointSeq = seq
  })
}

/** Clear the current checkpoint and resume (pending or paused -> running). */
export function clearCheckpoint(doc: PlanDocument, ctx: WriteContext, reason?: string): PlanDocument {
  const view = readPlan(doc)
  if (!view.checkpoint) return doc
  const resume = view.status === "pending" || view.status === "paused"
  return change(doc, ctx, `plan: clear checkpoint ${view.checkpoint} #${view.checkpointSeq}${reason ? ` (${reason})` : ""}`, d => {
    put(d, "checkpoint", null)
    d.checkpointContext = null
    if (resume) {
      put(d, "status", "running")
      d.statusAt = ctx.now
      d.statusBy = imm(ctx.by) as unknown as string
    }
  })
}

export function toStored(v: unknown): unknown {
  if (typeof v === "string") return imm(v)
  if (Array.isArray(v)) return v.map(toStored)
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = toStored(x)
    return out
  }
  return v === undefined ? null : v
}

/**
 * Record a human's approval of the current checkpoint. The orchestrator acts on it; because it is
 * stored in the document with the raise it answers, it is never lost or asked for again.
 */
export function approveCheckpoint(
  doc: PlanDocument,
  opts: { checkpoint?: string; id: string },
  ctx: WriteContext
): { doc: PlanDocument; approval: ApprovalRecord } {
  const view = readPlan(doc)
  if (!view.checkpoint) {
    throw new InputError(`plan "${view.name}" is ${view.status} and not waiting at a checkpoint: nothing to approve`)
  }
  if (opts.checkpoint && opts.checkpoint !== view.checkpoint) {
    throw new InputError(`plan "${view.name}" is waiting at checkpoint ${view.checkpoint}, not ${opts.checkpoint}: refusing to approve`)
  }
  const existing = findApproval(view, view.checkpoint, view.checkpointSeq)
  if (existing) return { doc, approval: existing }
  const approval: ApprovalRecord = {
    id: opts.id,
    checkpoint: view.checkpoint,
    seq: view.checkpointSeq,
    by: ctx.by,
    at: ctx.now,
  }
  const job = view.checkpointContext?.jobName
  if (typeof job === "string") approval.job = job
  const next = change(doc, ctx, `approve checkpoint ${view.checkpoint} #${view.checkpointSeq}`, d => {
    d.approvals[opts.id] = toStored(approval) as ApprovalRecord
  })
  return { doc: next, approval }
}

/** Cancel the plan: record `canceled` for it and for every job whose attempt has not finished. */
export function cancelPlan(doc: PlanDocument, ctx: WriteContext, reason = "plan canceled"): PlanDocument {
  const view = readPlan(doc)
  if (view.status === "canceled") return doc
  if (!canPlanTransition(view.status, "canceled")) {
    throw new InvalidTransitionError(`plan "${view.name}"`, view.status, "canceled")
  }
  const open = view.jobs.filter(j => JOB_RANK[j.status] < JOB_RANK.canceled)
  return change(doc, ctx, `plan: ${view.status} -> canceled; ${open.length} unfinished jobs canceled`, d => {
    put(d, "status", "canceled")
    d.statusAt = ctx.now
    d.statusBy = imm(ctx.by) as unknown as string
    for (const j of open) {
      writeStatus(d, j.name, j.attempt, "canceled", ctx).reason = imm(reason)
    }
  })
}

/* ------------------------------------------------------------------ lease */

export class LeaseHeldError extends InputError {
  readonly lease: LeaseRecord
  constructor(lease: LeaseRecord, now: number) {
    super(`plan is already run by ${lease.holder} (lease expires in ${Math.max(0, Math.round((lease.expiresAt - now) / 1000))} s)`)
    this.name = "LeaseHeldError"
    this.lease = lease
  }
}

/** Take the orchestrator lease, or renew it if `holder` already has it. Refused while another holds it. */
export function acquireLease(
  doc: PlanDocument,
  lease: { holder: string; host: string; pid: number; ttlMs: number },
  ctx: WriteContext,
  /** Take an unexpired lease whose holder is known to be dead (a local process that no longer exists). */
  takeOver = false
): PlanDocument {
  const view = readPlan(doc)
  const cur = view.lease
  if (cur && cur.holder !== lease.holder && cur.expiresAt > ctx.now && !takeOver) throw new LeaseHeldError(cur, ctx.now)
  if (cur && cur.holder === lease.holder) {
    return change(doc, ctx, `lease: renew`, d => {
      d.lease!.expiresAt = ctx.now + lease.ttlMs
    })
  }
  const how = cur ? `lease: take over from ${cur.holder} (${cur.expiresAt > ctx.now ? "holder is gone" : "expired"})` : `lease: acquire`
  return change(doc, ctx, how, d => {
    d.lease = toStored({
      holder: lease.holder,
      host: lease.host,
      pid: lease.pid,
      acquiredAt: ctx.now,
      expiresAt: ctx.now + lease.ttlMs,
    }) as LeaseRecord
  })
}

export function releaseLease(doc: PlanDocument, holder: string, ctx: WriteContext): PlanDocument {
  const cur = readPlan(doc).lease
  if (!cur || cur.holder !== holder) return doc
  return change(doc, ctx, `lease: release`, d => {
    d.lease = null
  })
}

/** Conflicting values currently on a job attempt's status (for diagnostics and tests). */
export function statusConflicts(doc: PlanDocument, jobName: string, attempt: number): string[] {
  const statuses = doc.jobs[jobName]?.status
  return statuses ? conflictValues(statuses, String(attempt)).map(v => str(v) ?? "") : []
}
