/**
 * The merge queue of a git plan, kept in the plan document (so it survives crashes and every machine
 * sees it). Pure: reads and `(doc, ..., ctx) => newDoc` writes, like plan.ts.
 *
 * A job attempt enters the queue when it completed, its dependencies are merged (or skipped) and, in
 * supervisor mode, its pre_merge checkpoint was approved. The lease holder takes entries one at a time in
 * queue order: it merges the job's branch onto a scratch ref of the integration branch, runs the plan's
 * `test` there, and moves the integration branch to exactly that commit when the test passes. Every step
 * is recorded here before the next one starts, so a restarted orchestrator resumes the entry it was on:
 *
 *   queued -> merging -> passed -> merged            (the commit is recorded as `passed` before the
 *                     -> conflict                     branch moves; a restart finishes the move)
 *                     -> test_failed
 *                     -> touch_violation
 *
 * The queue state of an entry is a scalar resolved by rank (the highest wins a concurrent write, and
 * every transition raises the rank), exactly like a job status. The job's own status follows:
 * ready_to_merge (queued), merging, merged, or conflict (conflict, test failure, touchSet violation: the
 * job needs a new attempt or a skip; failureKind and reason say which).
 */
import * as A from "@automerge/automerge"
import { changeOptions, type WriteContext } from "./actor.js"
import { InputError, InvalidTransitionError, NotFoundError } from "./errors.js"
import type { GitRecord, MergeEntryRecord, PlanDoc, PrRecord } from "./model.js"
import { findApproval, getJob, type JobView, type PlanDocument, type PlanView, put, readPlan, toStored } from "./plan.js"
import { conflictValues, plain, str } from "./resolve.js"
import { jobBranch } from "./branches.js"
import type { GitSpec } from "./spec.js"
import { canJobTransition } from "./states.js"

export const MERGE_STATES = ["queued", "merging", "conflict", "test_failed", "touch_violation", "passed", "merged"] as const
export type MergeState = (typeof MERGE_STATES)[number]

/** Allowed queue transitions. Every target ranks above its source (index in MERGE_STATES). */
export const MERGE_TRANSITIONS: Readonly<Record<MergeState, readonly MergeState[]>> = {
  queued: ["merging"],
  merging: ["passed", "conflict", "test_failed", "touch_violation"],
  conflict: [],
  test_failed: [],
  touch_violation: [],
  passed: ["merged"],
  merged: [],
}
const MERGE_RANK = Object.fromEntries(MERGE_STATES.map((s, i) => [s, i])) as Record<MergeState, number>
const isMergeState = (s: unknown): s is MergeState => typeof s === "string" && (MERGE_STATES as readonly string[]).includes(s)

export interface MergeEntryView {
  key: string
  job: string
  attempt: number
  seq: number
  state: MergeState
  enqueuedAt: number
  enqueuedBy: string
  branch: string
  scratchBase: string | null
  startedAt: number | null
  commit: string | null
  files: string[]
  output: string | null
  reason: string | null
  finishedAt: number | null
}

/** A git plan's record as read: the queue as entries in queue order. */
export interface GitView extends Omit<GitRecord, "queue" | "queueState"> {
  /** In queue order. */
  queue: MergeEntryView[]
}

export const entryKey = (job: string, attempt: number) => `${job}#${attempt}`

/** The git record a new plan document starts with. */
export function newGitRecord(spec: GitSpec): unknown {
  return toStored({
    repo: spec.repo,
    baseBranch: spec.baseBranch,
    integrationBranch: spec.integrationBranch,
    test: spec.test,
    pr: spec.pr,
    baseCommit: null,
    head: null,
    queue: {},
    queueState: {},
    prResult: null,
  })
}

function resolveMergeState(states: unknown, key: string): MergeState {
  const values = conflictValues(states, key).map(str).filter(isMergeState)
  return values.sort((a, b) => MERGE_RANK[b] - MERGE_RANK[a])[0] ?? "queued"
}

export function readGit(raw: unknown): GitView | null {
  if (!raw || typeof raw !== "object") return null
  const g = raw as Record<string, unknown>
  const entries = (g.queue ?? {}) as Record<string, Record<string, unknown>>
  const num = (v: unknown) => (typeof v === "number" ? v : null)
  const queue = Object.entries(entries).map(
    ([key, e]): MergeEntryView => ({
      key,
      job: str(e.job) ?? "",
      attempt: num(e.attempt) ?? 0,
      seq: num(e.seq) ?? 0,
      state: resolveMergeState(g.queueState, key),
      enqueuedAt: num(e.enqueuedAt) ?? 0,
      enqueuedBy: str(e.enqueuedBy) ?? "",
      branch: str(e.branch) ?? "",
      scratchBase: str(e.scratchBase) ?? null,
      startedAt: num(e.startedAt),
      commit: str(e.commit) ?? null,
      files: plain<string[]>(e.files) ?? [],
      output: str(e.output) ?? null,
      reason: str(e.reason) ?? null,
      finishedAt: num(e.finishedAt),
    })
  )
  queue.sort((a, b) => a.seq - b.seq || a.enqueuedAt - b.enqueuedAt || a.key.localeCompare(b.key))
  return {
    repo: str(g.repo) ?? ".",
    baseBranch: str(g.baseBranch) ?? null,
    integrationBranch: str(g.integrationBranch) ?? "",
    test: str(g.test) ?? null,
    pr: plain<GitView["pr"]>(g.pr) ?? { draft: false },
    baseCommit: str(g.baseCommit) ?? null,
    head: str(g.head) ?? null,
    queue,
    prResult: plain<PrRecord | null>(g.prResult) ?? null,
  }
}

function gitOf(view: PlanView): GitView {
  if (!view.git) throw new InputError(`plan "${view.name}" has no repo: it has no merge queue`)
  return view.git
}

function change(doc: PlanDocument, ctx: WriteContext, did: string, fn: (d: PlanDoc) => void): PlanDocument {
  return A.change(doc, changeOptions(ctx, did), fn)
}

const imm = (s: string) => new A.ImmutableString(s)

/* ------------------------------------------------------------------ policy */

/** A job's dependency counts as merged for the queue when it is merged or was skipped. */
function depMerged(view: PlanView, name: string): boolean {
  const d = view.jobs.find(j => j.name === name)
  return !!d && (d.status === "merged" || d.current.skipped)
}

/**
 * Jobs whose current attempt may enter the queue now, in spec order: completed, not skipped, every
 * dependency merged or skipped, not queued already and, in supervisor mode, its pre_merge approved.
 */
export function mergeCandidates(view: PlanView): JobView[] {
  const git = gitOf(view)
  const queued = new Set(git.queue.map(e => e.key))
  return view.jobs.filter(j => {
    if (j.status !== "completed" || j.current.skipped || queued.has(entryKey(j.name, j.attempt))) return false
    if (!j.dependsOn.every(d => depMerged(view, d))) return false
    if (view.mode === "supervisor") {
      const seq = j.current.checkpointSeq
      return seq !== null && !!findApproval(view, "pre_merge", seq)
    }
    return true
  })
}

/**
 * The entry the queue works on next: one already started (a restart resumes it) before any queued one;
 * entries of attempts that are no longer current are never started. Null when there is nothing to do.
 */
export function nextMerge(view: PlanView): MergeEntryView | null {
  const git = gitOf(view)
  const started = git.queue.find(e => e.state === "merging" || e.state === "passed")
  if (started) return started
  return (
    git.queue.find(e => {
      if (e.state !== "queued") return false
      const j = view.jobs.find(x => x.name === e.job)
      return !!j && j.attempt === e.attempt
    }) ?? null
  )
}

/** Anything left for the queue to do (entries to enqueue, merge or finish)? */
export function queueBusy(view: PlanView): boolean {
  return !!view.git && (mergeCandidates(view).length > 0 || nextMerge(view) !== null)
}

/* ------------------------------------------------------------------ writes */

function entryOf(git: GitView, key: string): MergeEntryView {
  const e = git.queue.find(x => x.key === key)
  if (!e) throw new NotFoundError(`the merge queue has no entry ${key}`)
  return e
}

function moveEntry(d: PlanDoc, e: MergeEntryView, to: MergeState): Record<string, unknown> {
  if (!MERGE_TRANSITIONS[e.state].includes(to)) throw new InvalidTransitionError(`merge queue entry ${e.key}`, e.state, to)
  put(d.git!.queueState, e.key, to)
  return (d.git!.queue as Record<string, unknown>)[e.key] as Record<string, unknown>
}

function moveJob(
  d: PlanDoc,
  view: PlanView,
  job: string,
  attempt: number,
  to: Parameters<typeof canJobTransition>[1],
  ctx: WriteContext
): Record<string, unknown> {
  const j = getJob(view, job)
  const a = j.attempts.find(x => x.n === attempt)
  if (!a) throw new NotFoundError(`job "${job}" has no attempt ${attempt}`)
  if (!canJobTransition(a.status, to)) throw new InvalidTransitionError(`job "${job}" attempt ${attempt}`, a.status, to)
  put(d.jobs[job].status, String(attempt), to)
  const rec = (d.jobs[job].attempts as unknown as Record<string, Record<string, unknown>>)[String(attempt)]
  rec.statusAt = ctx.now
  rec.statusBy = imm(ctx.by)
  return rec
}

/** Record the base branch and commit at the plan's first run (only the first call writes). */
export function recordGitBase(doc: PlanDocument, base: { baseBranch: string; baseCommit: string }, ctx: WriteContext): PlanDocument {
  const git = gitOf(readPlan(doc))
  if (git.baseCommit && git.head) return doc
  return change(doc, ctx, `git: base ${base.baseBranch} at ${base.baseCommit.slice(0, 12)}; ${git.integrationBranch} starts there`, d => {
    if (!git.baseBranch) d.git!.baseBranch = imm(base.baseBranch) as unknown as string
    if (!git.baseCommit) d.git!.baseCommit = imm(base.baseCommit) as unknown as string
    if (!git.head) d.git!.head = imm(base.baseCommit) as unknown as string
  })
}

/** Put a candidate (see mergeCandidates) into the queue; the job becomes ready_to_merge. */
export function enqueueMerge(doc: PlanDocument, jobName: string, ctx: WriteContext): PlanDocument {
  const view = readPlan(doc)
  const git = gitOf(view)
  const job = getJob(view, jobName)
  if (!mergeCandidates(view).some(j => j.name === jobName)) {
    throw new InvalidTransitionError(
      `job "${jobName}" attempt ${job.attempt}`,
      job.status,
      "ready_to_merge",
      "only a completed job whose dependencies are merged (and, in supervisor mode, whose pre_merge is approved) enters the merge queue"
    )
  }
  const key = entryKey(jobName, job.attempt)
  const seq = git.queue.reduce((m, e) => Math.max(m, e.seq), 0) + 1
  const entry: MergeEntryRecord = {
    job: jobName,
    attempt: job.attempt,
    seq,
    enqueuedAt: ctx.now,
    enqueuedBy: ctx.by,
    branch: job.current.branch ?? jobBranch(git.integrationBranch, jobName, job.attempt),
  }
  return change(doc, ctx, `merge queue: ${key} queued (#${seq})`, d => {
    ;(d.git!.queue as Record<string, unknown>)[key] = toStored(entry)
    put(d.git!.queueState, key, "queued")
    moveJob(d, view, jobName, job.attempt, "ready_to_merge", ctx)
  })
}

/** Start merging an entry on top of `scratchBase` (the integration head); the job becomes merging. */
export function startMerge(doc: PlanDocument, key: string, scratchBase: string, ctx: WriteContext): PlanDocument {
  const view = readPlan(doc)
  const e = entryOf(gitOf(view), key)
  return change(doc, ctx, `merge queue: ${key} merging onto ${scratchBase.slice(0, 12)}`, d => {
    const rec = moveEntry(d, e, "merging")
    rec.scratchBase = imm(scratchBase)
    rec.startedAt = ctx.now
    moveJob(d, view, e.job, e.attempt, "merging", ctx)
  })
}

export type MergeResult =
  | { kind: "passed"; commit: string }
  | { kind: "conflict"; files: string[]; detail?: string }
  | { kind: "test_failed"; commit: string; output: string; exitCode: number | null }
  | { kind: "touch_violation"; files: string[]; touchSet: string[] }

/** How a refusal reads in the job's `reason` (status, PR body, on_error context). */
function refusalReason(r: Exclude<MergeResult, { kind: "passed" }>): string {
  const list = (files: string[]) => (files.length > 10 ? `${files.slice(0, 10).join(", ")} and ${files.length - 10} more` : files.join(", "))
  switch (r.kind) {
    case "conflict":
      return r.files.length ? `merge conflict in ${list(r.files)}` : `merge failed: ${r.detail ?? "unknown error"}`
    case "test_failed":
      return `test failed (${r.exitCode === null ? "killed" : `exit ${r.exitCode}`}) on the combined result`
    case "touch_violation":
      return `changed files outside its touchSet (${r.touchSet.join(", ")}): ${list(r.files)}`
  }
}

/**
 * Record the scratch merge's outcome. `passed` records the tested commit (the integration branch moves
 * to it next, then `markMerged`); a refusal ends the entry and sets the job `conflict` with the reason.
 */
export function recordMergeResult(doc: PlanDocument, key: string, result: MergeResult, ctx: WriteContext): PlanDocument {
  const view = readPlan(doc)
  const e = entryOf(gitOf(view), key)
  if (result.kind === "passed") {
    return change(doc, ctx, `merge queue: ${key} passed as ${result.commit.slice(0, 12)}`, d => {
      moveEntry(d, e, "passed").commit = imm(result.commit)
    })
  }
  const reason = refusalReason(result)
  return change(doc, ctx, `merge queue: ${key} ${result.kind} (${reason})`, d => {
    const rec = moveEntry(d, e, result.kind)
    rec.reason = imm(reason)
    rec.finishedAt = ctx.now
    if (result.kind === "test_failed") {
      rec.commit = imm(result.commit)
      rec.output = imm(result.output)
    } else {
      rec.files = result.files.map(imm)
    }
    const a = moveJob(d, view, e.job, e.attempt, "conflict", ctx)
    a.reason = imm(reason)
    a.failureKind = imm(result.kind === "conflict" ? "merge_conflict" : result.kind)
  })
}

/** The integration branch now points at the entry's passed commit: record it; the job becomes merged. */
export function markMerged(doc: PlanDocument, key: string, ctx: WriteContext): PlanDocument {
  const view = readPlan(doc)
  const e = entryOf(gitOf(view), key)
  if (!e.commit) throw new InputError(`merge queue entry ${key} has no tested commit`)
  return change(doc, ctx, `merge queue: ${key} merged; ${view.git!.integrationBranch} at ${e.commit.slice(0, 12)}`, d => {
    const rec = moveEntry(d, e, "merged")
    rec.finishedAt = ctx.now
    d.git!.head = imm(e.commit!) as unknown as string
    moveJob(d, view, e.job, e.attempt, "merged", ctx)
  })
}

/** Record how the pull request was (or is to be) opened. */
export function recordPr(doc: PlanDocument, pr: Omit<PrRecord, "at" | "by">, ctx: WriteContext): PlanDocument {
  gitOf(readPlan(doc))
  return change(doc, ctx, pr.url ? `pull request opened: ${pr.url}` : `pull request: command printed (${pr.manual ?? "manual"})`, d => {
    d.git!.prResult = toStored({ ...pr, at: ctx.now, by: ctx.by }) as PrRecord
  })
}
