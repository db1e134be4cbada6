/**
 * The imperative shell of a git plan, driven by the runner (the lease holder): prepares the integration
 * branch, gives each attempt its worktree, works the merge queue kept in the plan document (src/doc/
 * merge.ts) and opens the pull request at the end. Every step is written to the document before the next
 * git step, so a runner killed at any moment is resumed by the next one:
 * - an entry recorded `merging` is merged again from its recorded scratch base (the integration branch
 *   never moved for it);
 * - an entry recorded `passed` has its tested commit in the document: the integration branch is moved
 *   to exactly that commit if it is still at the scratch base (compare-and-swap), and left alone if it is
 *   there already. The branch only ever points at commits whose test passed, and nothing merges twice.
 */
import { promises as fsp } from "node:fs"
import path from "node:path"
import type { WriteContext } from "../../doc/actor.js"
import {
  enqueueMerge,
  markMerged,
  type MergeEntryView,
  type MergeResult,
  mergeCandidates,
  nextMerge,
  recordGitBase,
  recordMergeResult,
  recordPr,
  startMerge,
} from "../../doc/merge.js"
import type { PrRecord } from "../../doc/model.js"
import { getJob, type PlanView, readPlan } from "../../doc/plan.js"
import { jobBranch } from "../../doc/branches.js"
import { summarize } from "../../doc/summary.js"
import type { PlanStore } from "../../sync/store/PlanStore.js"
import {
  addWorktree,
  changedFiles,
  commitAll,
  createBranch,
  currentBranch,
  git,
  GitError,
  linkSetup,
  moveBranch,
  removeWorktree,
  repoRoot,
  resolveCommit,
  run,
  runSetupCommands,
  scratchMerge,
  runShell,
  setRef,
  tail,
} from "./git.js"
import { attemptWorktree, jobCwdInWorktree, prBody, prCommands, printable, scratchRef, scratchWorktree, touchViolations, worktreesDir } from "./policy.js"

export interface PreparedAttempt {
  /** Where the job's process runs. */
  cwd: string
  /** Recorded in the attempt. */
  fields: { worktree: string; branch: string; baseCommit: string }
  env: Record<string, string>
}

export class GitPlan {
  private root = ""
  private busyWith: Promise<void> | null = null
  private retryAt = 0
  private retryDelay = 1000

  private readonly event: (line: string) => void

  constructor(
    private readonly store: PlanStore,
    private readonly planId: string,
    private readonly ctx: () => WriteContext,
    event: (line: string) => void,
    /** Called when background queue work wrote to the document. */
    private readonly poke: () => void = () => {}
  ) {
    // File names and git's messages reach a terminal: never with raw control characters.
    this.event = line => event(printable(line))
  }

  get busy(): boolean {
    return this.busyWith !== null
  }

  /** Wait for a merge in progress (the runner calls this before it exits). */
  async idle(): Promise<void> {
    await this.busyWith
  }

  private async view(): Promise<PlanView> {
    return readPlan(await this.store.loadPlan(this.planId))
  }

  /**
   * Resolve the repository, record the base branch and commit at the first run, and make sure the
   * integration branch exists where the document says it is. Refuses a pre-existing integration branch
   * this plan did not create.
   */
  async prepare(view: PlanView): Promise<void> {
    const g = view.git!
    this.root = await repoRoot(path.resolve(view.baseDir, g.repo))
    if (!g.head) {
      const baseBranch = g.baseBranch ?? (await currentBranch(this.root))
      const baseCommit = await resolveCommit(this.root, `refs/heads/${baseBranch}`)
      if (!baseCommit) throw new GitError(`base branch ${baseBranch} does not exist in ${this.root}`)
      const existing = await resolveCommit(this.root, `refs/heads/${g.integrationBranch}`)
      if (existing && existing !== baseCommit) {
        throw new GitError(
          `integration branch ${g.integrationBranch} already exists in ${this.root} (at ${existing.slice(0, 12)}) and this plan did not create it: delete it (git branch -D ${g.integrationBranch}) or set "integrationBranch" in the plan`
        )
      }
      await this.store.updatePlan(this.planId, doc => recordGitBase(doc, { baseBranch, baseCommit }, this.ctx()))
      this.event(`git: ${g.integrationBranch} starts at ${baseBranch} (${baseCommit.slice(0, 12)}) in ${this.root}`)
    }
    const head = (await this.view()).git!.head!
    if (!(await resolveCommit(this.root, `refs/heads/${g.integrationBranch}`))) await createBranch(this.root, g.integrationBranch, head)
  }

  /** Create the attempt's worktree from the integration head (base + everything merged, dependencies included), and run its setup. */
  async prepareAttempt(view: PlanView, jobName: string, attempt: number): Promise<PreparedAttempt> {
    const g = view.git!
    const job = getJob(view, jobName)
    const dir = attemptWorktree(this.store.dir, this.planId, jobName, attempt)
    const branch = jobBranch(g.integrationBranch, jobName, attempt)
    const start = g.head!
    await addWorktree(this.root, dir, branch, start, this.store.dir)
    const setup = job.setup ?? { copyFiles: [], symlinkDirs: [], commands: [] }
    await linkSetup(this.root, dir, setup)
    const env = { CONCORD_WORKTREE: dir, CONCORD_BRANCH: branch, CONCORD_REPO: this.root }
    await runSetupCommands(dir, setup.commands, { ...process.env, ...job.env, ...env })
    return { cwd: jobCwdInWorktree(this.root, view.baseDir, job.cwd, dir), fields: { worktree: dir, branch, baseCommit: start }, env }
  }

  /**
   * One round: enqueue the jobs that may enter the queue, then start the next merge in the background
   * (the runner keeps supervising processes meanwhile). Returns whether the document was written.
   */
  async step(view: PlanView): Promise<boolean> {
    if (!view.git || view.status === "canceled" || view.status === "failed" || view.status === "completed") return false
    let wrote = false
    for (const j of mergeCandidates(view)) {
      const a = j.current
      if (a.worktree && (await exists(a.worktree))) {
        await commitAll(a.worktree, `concord: ${j.name} (attempt ${a.n})`, [...(j.setup?.copyFiles ?? []), ...(j.setup?.symlinkDirs ?? [])])
      }
      await this.store.updatePlan(this.planId, doc => enqueueMerge(doc, j.name, this.ctx()))
      this.event(`${j.name} #${a.n}: queued for merging into ${view.git.integrationBranch}`)
      wrote = true
    }
    if (wrote) return true
    if (this.busyWith || Date.now() < this.retryAt) return false
    const next = nextMerge(view)
    if (!next) return false
    this.busyWith = this.work(next)
      .then(() => {
        this.retryDelay = 1000
      })
      .catch(e => {
        // Not a merge outcome but a failure to work the queue (a moved branch, a full disk): retry, slower each time.
        this.retryAt = Date.now() + this.retryDelay
        this.event(`merge queue: ${next.key}: ${(e as Error).message} (retrying in ${Math.round(this.retryDelay / 1000)} s)`)
        this.retryDelay = Math.min(60_000, this.retryDelay * 2)
      })
      .finally(() => {
        this.busyWith = null
        this.poke()
      })
    return false
  }

  /** Take one entry as far as it goes: merge on the scratch ref, test, move the integration branch. */
  private async work(entry: MergeEntryView): Promise<void> {
    let view = await this.view()
    const g = view.git!
    const branchRef = `refs/heads/${g.integrationBranch}`
    let e = entry
    if (e.state === "queued") {
      const tip = await resolveCommit(this.root, branchRef)
      if (tip !== g.head) {
        throw new GitError(
          `${g.integrationBranch} is at ${tip?.slice(0, 12) ?? "(missing)"} but the plan recorded ${g.head?.slice(0, 12)}: it was moved outside concord; put it back to continue`
        )
      }
      await this.store.updatePlan(this.planId, doc => startMerge(doc, e.key, g.head!, this.ctx()))
      view = await this.view()
      e = view.git!.queue.find(x => x.key === entry.key)!
      this.event(`${e.job} #${e.attempt}: merging onto ${g.integrationBranch} (${g.head!.slice(0, 12)})`)
    }
    if (e.state === "merging") {
      const result = await this.scratch(view, e)
      await this.store.updatePlan(this.planId, doc => recordMergeResult(doc, e.key, result, this.ctx()))
      if (result.kind !== "passed") {
        const v = await this.view()
        this.event(`${e.job} #${e.attempt}: conflict (${v.git!.queue.find(x => x.key === e.key)?.reason ?? result.kind})`)
        return
      }
      view = await this.view()
      e = view.git!.queue.find(x => x.key === entry.key)!
    }
    if (e.state === "passed") {
      const tip = await resolveCommit(this.root, branchRef)
      if (tip !== e.commit) {
        if (tip !== e.scratchBase) {
          throw new GitError(
            `${g.integrationBranch} is at ${tip?.slice(0, 12) ?? "(missing)"}, neither the tested commit ${e.commit!.slice(0, 12)} nor its base ${e.scratchBase?.slice(0, 12)}: it was moved outside concord`
          )
        }
        await moveBranch(this.root, g.integrationBranch, e.commit!, e.scratchBase!)
      }
      await this.store.updatePlan(this.planId, doc => markMerged(doc, e.key, this.ctx()))
      this.event(`${e.job} #${e.attempt}: merged; ${g.integrationBranch} at ${e.commit!.slice(0, 12)}`)
    }
  }

  /** The scratch merge and test of an entry recorded `merging`. */
  private async scratch(view: PlanView, e: MergeEntryView): Promise<MergeResult> {
    const g = view.git!
    const job = getJob(view, e.job)
    const attempt = job.attempts.find(a => a.n === e.attempt)
    const base = e.scratchBase!
    const tipOfJob = await resolveCommit(this.root, `refs/heads/${e.branch}`)
    if (!tipOfJob) return { kind: "conflict", files: [], detail: `branch ${e.branch} does not exist` }
    // What the job changed: from where its worktree started (or the merge base) to its branch.
    const from = attempt?.baseCommit ?? (await git(this.root, ["merge-base", base, tipOfJob])).stdout.trim()
    const violations = touchViolations(await changedFiles(this.root, from, tipOfJob), job.touchSet)
    if (violations.length) return { kind: "touch_violation", files: violations, touchSet: job.touchSet ?? [] }
    const dir = scratchWorktree(this.store.dir, this.planId)
    const keep = this.setupPaths(view)
    const merged = await scratchMerge(
      this.root,
      dir,
      base,
      tipOfJob,
      `concord: merge ${e.job} (attempt ${e.attempt}) into ${g.integrationBranch}`,
      keep,
      this.store.dir
    )
    if (merged.kind === "conflict") return { kind: "conflict", files: merged.files }
    await setRef(this.root, scratchRef(g.integrationBranch), merged.commit)
    if (g.test) {
      await linkSetup(this.root, dir, this.unionSetup(view))
      this.event(`${e.job} #${e.attempt}: testing ${merged.commit.slice(0, 12)}: ${g.test}`)
      const r = await runShell(dir, g.test, { ...process.env, CONCORD_PLAN: this.planId, CONCORD_MERGING: e.job })
      if (r.code !== 0) return { kind: "test_failed", commit: merged.commit, output: printable(tail(r.stdout + r.stderr)), exitCode: r.code }
    }
    return { kind: "passed", commit: merged.commit }
  }

  private unionSetup(view: PlanView) {
    const copyFiles = new Set<string>()
    const symlinkDirs = new Set<string>()
    for (const j of view.jobs) {
      j.setup?.copyFiles.forEach(f => copyFiles.add(f))
      j.setup?.symlinkDirs.forEach(d => symlinkDirs.add(d))
    }
    return { copyFiles: [...copyFiles], symlinkDirs: [...symlinkDirs] }
  }

  private setupPaths(view: PlanView): string[] {
    const u = this.unionSetup(view)
    return [...u.copyFiles, ...u.symlinkDirs]
  }

  /**
   * The end of a plan whose jobs are all merged: push the integration branch and open the PR with `gh`
   * when it is installed and authenticated and the repository has an `origin`; otherwise record and
   * print the exact command. Recorded once: a restart does not open a second PR. `again` (mc_pr / concord
   * pr) tries once more when the recorded result is only the command (gh or origin was missing, or the
   * push failed); an opened PR is never opened twice. Returns the recorded result.
   */
  async finish(view: PlanView, opts: { again?: boolean } = {}): Promise<PrRecord> {
    const g = view.git!
    if (g.prResult && (g.prResult.url || !opts.again)) return g.prResult
    const reports = await this.store.loadReportDigests(
      this.planId,
      view.jobs.map(j => j.name)
    )
    const summary = summarize(this.planId, view, reports, Date.now())
    const body = prBody(summary, g, Object.fromEntries(view.jobs.map(j => [j.name, j.attempts.length])))
    const bodyFile = path.join(this.store.dir, "logs", this.planId, "pr-body.md")
    await this.store.docs.adapter.writeFile(bodyFile, body, { durable: false })
    const title = printable(g.pr.title ?? `${view.name}: ${view.jobs.length} jobs merged by concord`)
    const cmds = prCommands(this.root, g, title, bodyFile)
    const manual = await this.whyManual()
    if (manual) {
      const { doc } = await this.store.updatePlan(this.planId, doc => recordPr(doc, { command: cmds.command, manual }, this.ctx()))
      this.event(`pull request not opened (${manual}); open it with:`)
      this.event(`  ${cmds.command}`)
      return readPlan(doc).git!.prResult!
    }
    const push = await git(this.root, cmds.push.slice(1), { allowFail: true })
    let failed: string | undefined
    let url: string | undefined
    if (push.code !== 0) failed = `git push failed: ${tail(push.stderr, 2, 300)}`
    else {
      const pr = await run(cmds.create[0], cmds.create.slice(1), { cwd: this.root })
      if (pr.code !== 0) failed = `gh pr create failed: ${tail(pr.stderr + pr.stdout, 2, 300)}`
      else url = printable(pr.stdout.trim().split("\n").pop() ?? "")
    }
    const { doc } = await this.store.updatePlan(this.planId, doc =>
      recordPr(doc, failed ? { command: cmds.command, manual: failed } : { command: cmds.command, url }, this.ctx())
    )
    if (failed) {
      this.event(`pull request not opened (${printable(failed)}); open it with:`)
      this.event(`  ${cmds.command}`)
    } else this.event(`pull request opened: ${url}`)
    return readPlan(doc).git!.prResult!
  }

  private async whyManual(): Promise<string | undefined> {
    const origin = await git(this.root, ["remote", "get-url", "origin"], { allowFail: true })
    if (origin.code !== 0) return "the repository has no remote named origin"
    try {
      const auth = await run("gh", ["auth", "status"], { cwd: this.root })
      if (auth.code !== 0) return "gh is not authenticated (gh auth login)"
    } catch {
      return "gh is not installed"
    }
    return undefined
  }

  /** Remove the plan's worktrees (when it completed; failed plans keep them for inspection). */
  async removeWorktrees(): Promise<number> {
    return removePlanWorktrees(this.root, this.store.dir, this.planId)
  }
}

/** Remove every worktree concord made for a plan (attempts and scratch). Returns how many. */
export async function removePlanWorktrees(root: string, storeDir: string, planId: string): Promise<number> {
  const dir = worktreesDir(storeDir, planId)
  let names: string[] = []
  try {
    names = await fsp.readdir(dir)
  } catch {
    return 0
  }
  for (const n of names) await removeWorktree(root, path.join(dir, n))
  await fsp.rm(dir, { recursive: true, force: true })
  return names.length
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p)
    return true
  } catch {
    return false
  }
}
