/**
 * Git operations on a plan's jobs, written once for every front end (`concord diff | merge | sync-worktree
 * | pr | cleanup` and the MCP tools mc_diff, mc_merge, mc_sync, mc_pr, mc_cleanup). They keep Mission
 * Control's names, mapped onto concord's model (README, "Git worktrees and the merge queue"):
 *
 *  - diff: what a job's current attempt changed, from the commit its worktree started at (or from the
 *    integration head) to what its worktree holds now, committed or not (its branch once the worktree is
 *    gone). Read only; the output is bounded and says when it was cut.
 *  - merge: never a second merge path. Merging is the merge queue's (the lease holder's): it tests the
 *    combined result and moves the integration branch only to a commit that passed. `merge` approves a
 *    job's pre_merge checkpoint (supervisor mode) and otherwise says where the job stands: waiting for
 *    what, or its place in the queue, or the commit it merged as.
 *  - sync: rebase (or merge) a job's worktree onto the integration head, so an agent sees what merged
 *    since it started. A conflict aborts it and leaves the worktree exactly as it was.
 *  - pr: the plan's one pull request, recorded once in `git.prResult` by the runner's own code: opened
 *    when the plan completed and it was not opened yet (or only its command was recorded), else the
 *    recorded result.
 *  - cleanup: remove worktrees (one job's finished attempts, or a whole plan's) and optionally branches.
 *
 * Everything but `merge` needs the repository and the worktrees, i.e. the local store of the machine
 * that ran the plan: on a remote backend they refuse. A refusal writes nothing.
 */
import { randomBytes } from "node:crypto"
import { existsSync, readdirSync } from "node:fs"
import path from "node:path"
import type { WriteContext } from "../doc/actor.js"
import { jobBranch } from "../doc/branches.js"
import { ConcordError, InputError } from "../doc/errors.js"
import { type GitView, mergeCandidates } from "../doc/merge.js"
import type { ApprovalRecord, PrRecord } from "../doc/model.js"
import { approveCheckpoint, findApproval, getJob, type JobView, type PlanView, readPlan, updateAttempt } from "../doc/plan.js"
import { JOB_RETRYABLE, type JobStatus } from "../doc/states.js"
import { hostName } from "../lib/host.js"
import { isSameProcessAlive } from "../orchestrator/proc.js"
import {
  git,
  gitHead,
  operationInProgress,
  removeWorktree,
  repoRoot,
  resolveCommit,
  syncWorktree,
  uncommittedChanges,
  worktreeTree,
} from "../orchestrator/worktree/git.js"
import { attemptWorktree, printable, scratchRef } from "../orchestrator/worktree/policy.js"
import { GitPlan, removePlanWorktrees } from "../orchestrator/worktree/queue.js"
import { acquirePlanLock, PlanLockedError } from "../orchestrator/lock.js"
import type { PlanStore } from "../sync/store/PlanStore.js"
import type { PlanBackend } from "./backend.js"
import { LocalBackend } from "./local.js"
import { type ResolvedPlan, resolvePlan } from "./resolve.js"

/** Diff output kept by default (bytes), and the most a caller may ask for. */
export const DEFAULT_DIFF_BYTES = 64 * 1024
export const MAX_DIFF_BYTES = 4 * 1024 * 1024

interface GitPlanContext {
  plan: ResolvedPlan
  view: PlanView
  git: GitView
}

function gitPlan(plan: ResolvedPlan): GitPlanContext {
  const view = readPlan(plan.doc)
  if (!view.git)
    throw new InputError(`plan "${view.name}" has no repo: it has no worktrees, merge queue or pull request (add repo: to the plan file)`, "not_a_git_plan")
  return { plan, view, git: view.git }
}

/** The local store: worktrees and the repository are on the machine whose store ran the plan. */
function localStore(backend: PlanBackend, what: string): PlanStore {
  if (backend instanceof LocalBackend) return backend.store
  throw new InputError(
    `${what} needs the plan's git repository and worktrees, which are on the machine that runs the plan; this works against ${backend.where}: run it there (concord mcp --store DIR, or concord without --remote)`,
    "not_local"
  )
}

async function planRoot(view: PlanView, g: GitView): Promise<string> {
  return repoRoot(path.resolve(view.baseDir, g.repo))
}

/** Files setup copied or linked into a worktree: never part of the job's change. */
const setupPaths = (job: JobView) => [...(job.setup?.copyFiles ?? []), ...(job.setup?.symlinkDirs ?? [])]

function worktreeOf(job: JobView, verb: string): string {
  const a = job.current
  if (!a.worktree) {
    throw new InputError(
      `job "${job.name}" attempt ${a.n} has no worktree (it is ${job.status}; a job gets one when it starts): nothing to ${verb}`,
      "no_worktree"
    )
  }
  const here = hostName()
  if (a.host && a.host !== here)
    throw new InputError(`job "${job.name}" attempt ${a.n} ran on ${a.host}: its worktree ${a.worktree} is there, not on ${here}`, "not_local")
  return a.worktree
}

/* ------------------------------------------------------------------ diff */

export interface DiffInput {
  planRef?: string
  job: string
  /** `git diff --stat` instead of the patch. */
  stat?: boolean
  /** start (default): from the commit the attempt started at; integration: from the integration head. */
  against?: "start" | "integration"
  maxBytes?: number
}

export interface DiffResult {
  planId: string
  plan: string
  job: string
  attempt: number
  against: "start" | "integration"
  /** The commit compared from. */
  from: string
  /** What is compared: the worktree's current content (committed or not), or the attempt's branch. */
  to: "worktree" | "branch"
  branch: string
  files: { path: string; added: number | null; deleted: number | null }[]
  stat: boolean
  diff: string
  /** Bytes of the whole diff, and whether `diff` holds only its first `maxBytes`. */
  bytes: number
  truncated: boolean
  text: string
}

export async function diff(backend: PlanBackend, input: DiffInput): Promise<DiffResult> {
  localStore(backend, "diff")
  const { plan, view, git: g } = gitPlan(await resolvePlan(backend, input.planRef))
  const job = getJob(view, input.job)
  const a = job.current
  const maxBytes = input.maxBytes ?? DEFAULT_DIFF_BYTES
  if (!Number.isInteger(maxBytes) || maxBytes < 1 || maxBytes > MAX_DIFF_BYTES)
    throw new InputError(`invalid maxBytes ${maxBytes}: expected a whole number from 1 to ${MAX_DIFF_BYTES}`)
  const against = input.against ?? "start"
  if (against !== "start" && against !== "integration") throw new InputError(`invalid against "${String(against)}": expected start or integration`)
  const root = await planRoot(view, g)
  const branch = a.branch ?? jobBranch(g.integrationBranch, job.name, a.n)
  let to: "worktree" | "branch"
  let target: string
  if (a.worktree && existsSync(a.worktree)) {
    worktreeOf(job, "diff")
    to = "worktree"
    target = await worktreeTree(a.worktree, setupPaths(job))
  } else {
    const tip = await resolveCommit(root, `refs/heads/${branch}`)
    if (!a.worktree || !tip) {
      throw new InputError(
        a.worktree
          ? `job "${job.name}" attempt ${a.n}: its worktree and branch ${branch} are gone (removed by cleanup): nothing to diff`
          : `job "${job.name}" attempt ${a.n} has no worktree (it is ${job.status}; a job gets one when it starts): nothing to diff`,
        "no_worktree"
      )
    }
    to = "branch"
    target = tip
  }
  const from = against === "start" ? a.baseCommit : g.head
  if (!from)
    throw new InputError(`job "${job.name}" attempt ${a.n} has no recorded ${against === "start" ? "start commit" : "integration head"}`, "no_worktree")
  const cwd = to === "worktree" ? a.worktree! : root
  const base = ["diff", "--no-color", "--no-ext-diff", "--no-renames"]
  // The file list is bounded too (a change of a million files must not fill the server's memory).
  const numstat = await gitHead(cwd, [...base, "--numstat", "-z", from, target], 1 << 20, undefined, "\0")
  const files = parseNumstat(numstat.text)
  const d = await gitHead(cwd, input.stat ? [...base, "--stat=120", from, target] : [...base, from, target], maxBytes)
  const count = `${files.length}${numstat.truncated ? "+" : ""} file${files.length === 1 && !numstat.truncated ? "" : "s"}`
  const what = `${job.name} #${a.n}: ${to === "worktree" ? "its worktree" : `branch ${branch}`} against ${against === "start" ? "where it started" : g.integrationBranch} (${from.slice(0, 12)}): ${count} changed`
  const cut = d.truncated ? `\n[diff truncated: showing the first ${Buffer.byteLength(d.text)} of ${d.bytes} bytes; use stat, or a larger maxBytes]` : ""
  const text = files.length === 0 && !numstat.truncated ? `${what}\n(no changes)` : `${what}\n${d.text}${cut}`
  return {
    planId: plan.id,
    plan: view.name,
    job: job.name,
    attempt: a.n,
    against,
    from,
    to,
    branch,
    files,
    stat: !!input.stat,
    diff: d.text,
    bytes: d.bytes,
    truncated: d.truncated,
    text,
  }
}

function parseNumstat(z: string): DiffResult["files"] {
  // `added<TAB>deleted<TAB>path\0` per file ("-" for binary files).
  return z
    .split("\0")
    .filter(Boolean)
    .map(rec => {
      const [added, deleted, ...p] = rec.split("\t")
      return { path: p.join("\t"), added: added === "-" ? null : Number(added), deleted: deleted === "-" ? null : Number(deleted) }
    })
}

/* ------------------------------------------------------------------ merge */

export interface MergeInput {
  planRef?: string
  job: string
}

export interface MergeQueueSpot {
  state: string
  /** 1-based place among the entries not finished yet (null when finished). */
  position: number | null
  /** Jobs ahead of it in the queue. */
  ahead: string[]
  commit: string | null
  reason: string | null
}

export interface MergeStatusResult {
  planId: string
  plan: string
  job: string
  attempt: number
  status: JobStatus
  /** What happens next for the job: approved | queued | merging | merged | waiting. */
  state: "approved" | "queued" | "merging" | "merged" | "waiting"
  approved: { checkpoint: string; seq: number; by: string } | null
  queue: MergeQueueSpot | null
  /** Dependencies not merged (or skipped) yet. */
  waitingFor: string[]
  integrationBranch: string
  orchestrator: string | null
  text: string
}

/**
 * Ask for a job to be merged. The merge queue does the merging; this approves the job's pre_merge
 * checkpoint when the plan waits at it, and says where the job stands. A job that cannot be merged
 * (not completed, refused by the queue, over) is refused, naming what to do instead.
 */
export async function requestMerge(backend: PlanBackend, input: MergeInput, clock: () => WriteContext): Promise<MergeStatusResult> {
  const { plan, view, git: g } = gitPlan(await resolvePlan(backend, input.planRef))
  const job = getJob(view, input.job)
  let approved: MergeStatusResult["approved"] = null
  let current = view
  const cpJob = view.checkpointContext?.jobName
  const earlier = view.checkpoint ? findApproval(view, view.checkpoint, view.checkpointSeq) : undefined
  if (view.checkpoint === "pre_merge" && cpJob === job.name && job.status === "completed" && !earlier) {
    // Decided again on the document as it is written: never approve a pre_merge raised meanwhile for another job.
    const { doc, result } = await backend.updatePlan<ApprovalRecord | null>(plan.id, d => {
      const v = readPlan(d)
      const ok = v.checkpoint === "pre_merge" && v.checkpointContext?.jobName === job.name && getJob(v, job.name).status === "completed"
      if (!ok || findApproval(v, "pre_merge", v.checkpointSeq)) return { doc: d, result: null }
      const r = approveCheckpoint(d, { checkpoint: "pre_merge", id: `${Date.now()}-${randomBytes(4).toString("hex")}` }, clock())
      return { doc: r.doc, result: r.approval }
    })
    if (result) approved = { checkpoint: result.checkpoint, seq: result.seq, by: result.by }
    current = readPlan(doc)
  }
  const j = getJob(current, job.name)
  const gv = current.git!
  const lease = current.lease
  const orchestrator = lease && lease.expiresAt > clock().now ? lease.holder : null
  const base = {
    planId: plan.id,
    plan: view.name,
    job: j.name,
    attempt: j.attempt,
    status: j.status,
    approved,
    integrationBranch: g.integrationBranch,
    orchestrator,
  }
  const runHint = orchestrator
    ? `the running orchestrator (${orchestrator}) works the queue`
    : `no orchestrator is running: start one with  concord run ${plan.id}`
  const entry = gv.queue.find(e => e.job === j.name && e.attempt === j.attempt)
  if (entry) {
    const open = gv.queue.filter(e => e.state === "queued" || e.state === "merging" || e.state === "passed")
    const idx = open.findIndex(e => e.key === entry.key)
    const spot: MergeQueueSpot = {
      state: entry.state,
      position: idx >= 0 ? idx + 1 : null,
      ahead: idx >= 0 ? open.slice(0, idx).map(e => e.job) : [],
      commit: entry.commit,
      reason: entry.reason,
    }
    if (entry.state === "merged") {
      return {
        ...base,
        state: "merged",
        queue: spot,
        waitingFor: [],
        text: `${j.name} #${j.attempt} is merged into ${g.integrationBranch} as ${entry.commit?.slice(0, 12)}`,
      }
    }
    if (entry.state === "conflict" || entry.state === "test_failed" || entry.state === "touch_violation") {
      throw new InputError(refusedMessage(j, entry.reason ?? entry.state, plan.id), "merge_refused")
    }
    const where = idx === 0 ? "first in the merge queue" : `number ${idx + 1} in the merge queue, after ${spot.ahead.join(", ")}`
    const state = entry.state === "queued" ? "queued" : "merging"
    return {
      ...base,
      state,
      queue: spot,
      waitingFor: [],
      text: `${j.name} #${j.attempt} is ${entry.state === "queued" ? where : `being merged into ${g.integrationBranch} (${entry.state})`}; ${runHint}`,
    }
  }
  if (j.status === "conflict" || j.status === "needs_rebase") throw new InputError(refusedMessage(j, j.current.reason ?? j.status, plan.id), "merge_refused")
  if (j.current.skipped) throw new InputError(`job "${j.name}" was skipped: it is not merged`, "merge_refused")
  if (j.status !== "completed") {
    const why = JOB_RETRYABLE.has(j.status)
      ? `its attempt ${j.attempt} is over (${j.status}): retry it first (mc_plan_approve {retry: "${j.name}"} / concord approve --retry ${j.name})`
      : `it enters the merge queue when it has completed (the job's agent reports completed)`
    throw new InputError(`job "${j.name}" is ${j.status}, not completed: ${why}`, "not_completed")
  }
  const waitingFor = j.dependsOn.filter(d => {
    const dj = current.jobs.find(x => x.name === d)
    return !dj || !(dj.status === "merged" || dj.current.skipped)
  })
  if (waitingFor.length) {
    const list = waitingFor.map(d => `${d} (${current.jobs.find(x => x.name === d)?.status ?? "?"})`).join(", ")
    return {
      ...base,
      state: "waiting",
      queue: null,
      waitingFor,
      text: `${j.name} #${j.attempt} completed; it enters the merge queue once its dependencies are merged: ${list}`,
    }
  }
  if (current.mode === "supervisor" && !mergeCandidates(current).some(x => x.name === j.name)) {
    const other = current.checkpoint === "pre_merge" && typeof current.checkpointContext?.jobName === "string" ? current.checkpointContext.jobName : null
    const text = other
      ? `${j.name} #${j.attempt} completed; the plan waits at pre_merge for ${other} first: approve that one (mc_merge {name: "${other}"}), then this one`
      : `${j.name} #${j.attempt} completed; its pre_merge checkpoint is not raised yet (the orchestrator raises it; then call this again). ${runHint}`
    return { ...base, state: "waiting", queue: null, waitingFor: [], text }
  }
  const wasApproved = !approved && earlier && current.checkpoint === "pre_merge" && cpJob === j.name
  const lead = approved ? `approved pre_merge #${approved.seq} for ${j.name}: ` : wasApproved ? `pre_merge for ${j.name} was approved by ${earlier.by}: ` : ""
  return {
    ...base,
    state: approved || wasApproved ? "approved" : "queued",
    queue: null,
    waitingFor: [],
    text: `${lead}${j.name} #${j.attempt} enters the merge queue at the orchestrator's next round; it is merged into ${g.integrationBranch} only if the combined result passes${g.test ? ` (${g.test})` : ""}. ${runHint}`,
  }
}

function refusedMessage(j: JobView, reason: string, planId: string): string {
  return `job "${j.name}" attempt ${j.attempt} was refused by the merge queue (${reason}): retry it, which starts from the current integration head (mc_plan_approve {retry: "${j.name}"} / concord approve ${planId} --retry ${j.name}), or skip it`
}

/* ------------------------------------------------------------------ sync */

export interface SyncInput {
  planRef?: string
  job: string
  strategy?: "rebase" | "merge"
}

export interface SyncResult {
  planId: string
  plan: string
  job: string
  attempt: number
  strategy: "rebase" | "merge"
  /** The integration head synced onto. */
  onto: string
  /** HEAD of the worktree before and after. */
  from: string
  head: string
  changed: boolean
  text: string
}

/** Job statuses whose worktree may be synced: the attempt is live, or completed and not yet in the queue. */
const SYNCABLE: ReadonlySet<JobStatus> = new Set(["running", "completed"])

export async function syncJob(backend: PlanBackend, input: SyncInput, clock: () => WriteContext): Promise<SyncResult> {
  localStore(backend, "sync")
  const strategy = input.strategy ?? "rebase"
  if (strategy !== "rebase" && strategy !== "merge") throw new InputError(`invalid strategy "${String(strategy)}": expected rebase or merge`)
  const { plan, view, git: g } = gitPlan(await resolvePlan(backend, input.planRef))
  const job = getJob(view, input.job)
  const a = job.current
  const dir = worktreeOf(job, "sync")
  if (!SYNCABLE.has(job.status)) {
    const why = JOB_RETRYABLE.has(job.status)
      ? `the attempt is over: a retry starts a new attempt from the integration head`
      : job.status === "merged"
        ? "it is merged already"
        : ["ready_to_merge", "merging"].includes(job.status)
          ? "its branch is in the merge queue now and must not move"
          : "it has not started"
    throw new InputError(`job "${job.name}" attempt ${a.n} is ${job.status}: not synced (${why})`, "not_syncable")
  }
  const lease = view.lease
  if (job.status === "completed" && lease && lease.expiresAt > clock().now && mergeCandidates(view).some(x => x.name === job.name)) {
    throw new InputError(
      `job "${job.name}" attempt ${a.n} is completed and about to enter the merge queue (${lease.holder} runs the plan): its branch must not move now`,
      "not_syncable"
    )
  }
  if (!existsSync(dir))
    throw new InputError(`job "${job.name}" attempt ${a.n}: its worktree ${dir} is gone (removed by cleanup): nothing to sync`, "no_worktree")
  if (!g.head) throw new InputError(`plan "${view.name}" has no integration head yet (it has not run)`, "no_worktree")
  const busy = await operationInProgress(dir)
  if (busy) {
    throw new InputError(
      `job "${job.name}" attempt ${a.n}: a ${busy} is in progress in its worktree (left by the agent, or by a sync that was interrupted): finish it or abort it (git -C ${dir} ${busy} --abort), then sync`,
      "in_progress"
    )
  }
  const dirty = (await uncommittedChanges(dir)).filter(f => !setupPaths(job).some(p => f === p || f.startsWith(`${p}/`)))
  if (dirty.length) {
    const list = dirty.length > 10 ? `${dirty.slice(0, 10).join(", ")} and ${dirty.length - 10} more` : dirty.join(", ")
    throw new InputError(
      `job "${job.name}" attempt ${a.n}: its worktree has uncommitted changes (${list}): commit them first (git -C ${dir} commit -am ...), then sync`,
      "uncommitted"
    )
  }
  const outcome = await syncWorktree(dir, g.head, strategy, `concord: merge ${g.integrationBranch} into ${a.branch ?? job.name}`)
  const base = { planId: plan.id, plan: view.name, job: job.name, attempt: a.n, strategy, onto: g.head }
  if (outcome.kind === "conflict") {
    const files = outcome.files.length ? `conflicts in ${outcome.files.join(", ")}` : outcome.detail
    throw new ConcordError(
      `job "${job.name}" attempt ${a.n}: ${strategy} onto ${g.integrationBranch} (${g.head.slice(0, 12)}) stopped: ${printable(files)}; aborted, the worktree is as it was. Resolve by hand (git -C ${dir} ${strategy} ${g.head.slice(0, 12)}), or let the merge queue report the conflict`,
      1,
      "sync_conflict"
    )
  }
  // What the attempt changed is now measured from the head it synced onto (diff, touchSet). Recorded after
  // git moved the branch; a sync killed in between (or an agent that merged the integration branch itself)
  // is repaired by the next sync, which finds the head in the branch's history.
  const record = (why: string) =>
    backend.updatePlan(plan.id, d =>
      updateAttempt(
        d,
        job.name,
        a.n,
        { baseCommit: g.head! },
        clock(),
        `job ${job.name} #${a.n}: ${why}; it now starts at ${g.integrationBranch} ${g.head!.slice(0, 12)}`
      )
    )
  if (outcome.kind === "up_to_date") {
    const repaired = a.baseCommit !== g.head
    if (repaired) await record(`${g.integrationBranch} is in its branch already`)
    const note = repaired ? `; its recorded start is now ${g.head.slice(0, 12)} (it was ${a.baseCommit?.slice(0, 12) ?? "not recorded"})` : ""
    return {
      ...base,
      from: outcome.head,
      head: outcome.head,
      changed: false,
      text: `${job.name} #${a.n} is up to date with ${g.integrationBranch} (${g.head.slice(0, 12)}): nothing to do${note}`,
    }
  }
  await record(`${strategy} onto ${g.integrationBranch}`)
  return {
    ...base,
    from: outcome.from,
    head: outcome.head,
    changed: true,
    text: `${job.name} #${a.n}: ${strategy === "rebase" ? "rebased" : "merged"} onto ${g.integrationBranch} (${g.head.slice(0, 12)}); its branch is at ${outcome.head.slice(0, 12)} (was ${outcome.from.slice(0, 12)})`,
  }
}

/* ------------------------------------------------------------------ pr */

export interface PrInput {
  planRef?: string
  /** For this call only (when it opens the PR): override the plan's pr settings. */
  title?: string
  body?: string
  draft?: boolean
}

export interface PrResult {
  planId: string
  plan: string
  /** Whether this call opened it (or recorded the command). */
  now: boolean
  url: string | null
  command: string
  manual: string | null
  at: number
  by: string
  text: string
}

export async function pullRequest(backend: PlanBackend, input: PrInput, clock: () => WriteContext): Promise<PrResult> {
  const store = localStore(backend, "pr")
  const { plan, view, git: g } = gitPlan(await resolvePlan(backend, input.planRef))
  const result = (pr: PrRecord, now: boolean): PrResult => {
    const text = pr.url
      ? `${now ? "pull request opened" : "the pull request was opened"}: ${pr.url}`
      : `pull request not opened (${pr.manual ?? "manual"}); open it with:\n  ${pr.command}`
    return { planId: plan.id, plan: view.name, now, url: pr.url ?? null, command: pr.command, manual: pr.manual ?? null, at: pr.at, by: pr.by, text }
  }
  if (g.prResult?.url) return result(g.prResult, false)
  if (view.status !== "completed") {
    if (view.checkpoint === "pre_pr") {
      throw new InputError(
        `plan "${view.name}" waits at pre_pr: approve it (mc_plan_approve {checkpoint: "pre_pr"} / concord approve ${plan.id}); the orchestrator then opens the pull request`,
        "not_completed"
      )
    }
    const open = view.jobs.filter(j => j.status !== "merged" && !j.current.skipped).map(j => `${j.name} (${j.status})`)
    const why =
      view.status === "failed" || view.status === "canceled"
        ? `it is ${view.status}`
        : `not every job is merged yet${open.length ? `: ${open.join(", ")}` : ""}`
    throw new InputError(`plan "${view.name}" is ${view.status}: no pull request before the plan completed (${why})`, "not_completed")
  }
  // The plan's lock (the one `concord run` holds) while the PR is opened: two callers never open two.
  const release = await planLock(store, plan.id, clock().by)
  try {
    const fresh = gitPlan(await resolvePlan(backend, plan.id))
    if (fresh.git.prResult?.url) return result(fresh.git.prResult, false)
    const gp = new GitPlan(store, plan.id, clock, () => {})
    await gp.prepare(fresh.view)
    const pr = {
      ...fresh.git.pr,
      ...(input.title !== undefined ? { title: input.title } : {}),
      ...(input.body !== undefined ? { body: input.body } : {}),
      ...(input.draft !== undefined ? { draft: input.draft } : {}),
    }
    const rec = await gp.finish({ ...fresh.view, git: { ...fresh.git, pr } }, { again: true })
    return result(rec, true)
  } finally {
    await release()
  }
}

/** The plan's lock file, waiting up to `waitMs` for another holder (a concurrent mc_pr) to let go. */
async function planLock(store: PlanStore, planId: string, by: string, waitMs = 30_000): Promise<() => Promise<void>> {
  const end = Date.now() + waitMs
  for (;;) {
    try {
      return await acquirePlanLock(store.dir, planId, { holder: by, host: hostName(), pid: process.pid, startedAt: Date.now() })
    } catch (e) {
      if (!(e instanceof PlanLockedError)) throw e
      if (Date.now() > end)
        throw new ConcordError(
          `plan ${planId} is locked by ${e.info.holder} (an orchestrator or another pull request call): try again when it is done`,
          1,
          "locked"
        )
      await new Promise(r => setTimeout(r, 100))
    }
  }
}

/* ------------------------------------------------------------------ cleanup */

export interface CleanupInput {
  planRef?: string
  /** Only this job's worktrees (its attempts that are over); without it, the whole plan's. */
  job?: string
  /** Also delete the branches of what was removed (never the integration branch). */
  branches?: boolean
}

export interface CleanupResult {
  planId: string
  plan: string
  job: string | null
  repo: string
  removed: string[]
  branchesDeleted: string[]
  kept: { worktree: string; why: string }[]
  text: string
}

/** A job attempt in these statuses still needs its worktree (it runs, or its work is not committed yet). */
const IN_USE: ReadonlySet<JobStatus> = new Set(["queued", "waiting_deps", "running", "completed"])
/** ... and in these its branch (the merge queue merges it). */
const BRANCH_IN_USE: ReadonlySet<JobStatus> = new Set([...IN_USE, "ready_to_merge", "merging"])

export async function cleanup(backend: PlanBackend, input: CleanupInput): Promise<CleanupResult> {
  const store = localStore(backend, "cleanup")
  const { plan, view, git: g } = gitPlan(await resolvePlan(backend, input.planRef))
  const host = hostName()
  const alive = (j: JobView) =>
    j.attempts.some(a => a.pid !== null && (a.host ?? host) === host && a.status === "running" && isSameProcessAlive(a.pid, a.pidStartedAt))
  const root = await planRoot(view, g)
  if (input.job === undefined) {
    const live = view.jobs.filter(j => j.status === "running" && alive(j))
    if (live.length)
      throw new ConcordError(`plan "${view.name}" still has running jobs (${live.map(j => j.name).join(", ")}): cancel it or let it finish before cleaning up`)
    const lease = view.lease
    if (lease && lease.expiresAt > Date.now() && !(lease.host === host && !isSameProcessAlive(lease.pid, null))) {
      throw new ConcordError(`plan "${view.name}" is being run by ${lease.holder}: stop it before cleaning up`)
    }
    const before = worktreeNames(store.dir, plan.id)
    const n = await removePlanWorktrees(root, store.dir, plan.id)
    const deleted: string[] = []
    if (input.branches) {
      for (const j of view.jobs)
        for (const a of j.attempts)
          if (await deleteBranch(root, a.branch ?? jobBranch(g.integrationBranch, j.name, a.n)))
            deleted.push(a.branch ?? jobBranch(g.integrationBranch, j.name, a.n))
      await git(root, ["update-ref", "-d", scratchRef(g.integrationBranch)], { allowFail: true })
    }
    const lines = [`removed ${n} worktree${n === 1 ? "" : "s"} of plan ${view.name} from ${root}`]
    if (input.branches) lines.push(`deleted ${deleted.length} job branch${deleted.length === 1 ? "" : "es"}; kept ${g.integrationBranch}`)
    return { planId: plan.id, plan: view.name, job: null, repo: root, removed: before, branchesDeleted: deleted, kept: [], text: lines.join("\n") }
  }
  const job = getJob(view, input.job)
  const removed: string[] = []
  const kept: CleanupResult["kept"] = []
  const deleted: string[] = []
  for (const a of job.attempts) {
    const dir = a.worktree ?? attemptWorktree(store.dir, plan.id, job.name, a.n)
    const there = existsSync(dir)
    const liveProcess = a.pid !== null && (a.host ?? host) === host && isSameProcessAlive(a.pid, a.pidStartedAt)
    if (IN_USE.has(a.status) || liveProcess) {
      const why = IN_USE.has(a.status)
        ? `attempt ${a.n} is ${a.status}${a.status === "completed" ? " and not yet in the merge queue (its work may not be committed)" : ""}`
        : `attempt ${a.n}'s process ${a.pid} is still alive`
      if (there) kept.push({ worktree: dir, why })
      continue
    }
    if (a.host && a.host !== host) {
      kept.push({ worktree: dir, why: `attempt ${a.n} ran on ${a.host}` })
      continue
    }
    if (there) {
      await removeWorktree(root, dir)
      removed.push(dir)
    }
    if (input.branches && !BRANCH_IN_USE.has(a.status)) {
      const b = a.branch ?? jobBranch(g.integrationBranch, job.name, a.n)
      if (await deleteBranch(root, b)) deleted.push(b)
    }
  }
  if (removed.length === 0 && kept.length > 0 && deleted.length === 0) {
    throw new InputError(
      `job "${job.name}": nothing to clean up: ${kept.map(k => `${k.worktree} is in use (${k.why})`).join("; ")}; stop it first (mc_kill, or concord cancel for the plan)`,
      "in_use"
    )
  }
  const lines = [`removed ${removed.length} worktree${removed.length === 1 ? "" : "s"} of job ${job.name} (plan ${view.name})`]
  if (input.branches) lines.push(`deleted ${deleted.length} branch${deleted.length === 1 ? "" : "es"}${deleted.length ? `: ${deleted.join(", ")}` : ""}`)
  for (const k of kept) lines.push(`kept ${k.worktree}: ${k.why}`)
  return { planId: plan.id, plan: view.name, job: job.name, repo: root, removed, branchesDeleted: deleted, kept, text: lines.join("\n") }
}

function worktreeNames(storeDir: string, planId: string): string[] {
  const dir = path.join(storeDir, "worktrees", planId)
  try {
    return readdirSync(dir).map(n => path.join(dir, n))
  } catch {
    return []
  }
}

async function deleteBranch(root: string, branch: string): Promise<boolean> {
  return (await git(root, ["branch", "-D", "-q", branch], { allowFail: true })).code === 0
}
