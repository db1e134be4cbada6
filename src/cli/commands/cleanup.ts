/** `concord cleanup [PLAN]`: remove the git worktrees a plan kept (and, with --branches, its job branches). */
import { LocalBackend } from "../../ops/local.js"
import { resolvePlan } from "../../ops/resolve.js"
import type { Command } from "commander"
import { ConcordError, InputError } from "../../doc/errors.js"
import { readPlan } from "../../doc/plan.js"
import { jobBranch } from "../../doc/branches.js"
import { isSameProcessAlive } from "../../orchestrator/proc.js"
import { git, repoRoot } from "../../orchestrator/worktree/git.js"
import { scratchRef } from "../../orchestrator/worktree/policy.js"
import { removePlanWorktrees } from "../../orchestrator/worktree/queue.js"
import { type GlobalOptions, hostName, openStore } from "../context.js"
import { out } from "../output.js"
import path from "node:path"

export function registerCleanup(program: Command, globals: () => GlobalOptions): void {
  program
    .command("cleanup")
    .argument("[plan]", "plan id, url or name")
    .option("--branches", "also delete the plan's job branches and scratch ref (the integration branch is kept)")
    .description("remove the git worktrees of a git plan (kept when a plan fails, for inspection)")
    .action(async (planRef: string | undefined, opts: { branches?: boolean }) => {
      const store = openStore(globals())
      const entry = await resolvePlan(new LocalBackend(store), planRef)
      const view = readPlan(entry.doc)
      if (!view.git) throw new InputError(`plan "${view.name}" has no repo: it has no worktrees to clean up`)
      const host = hostName()
      const live = view.jobs.filter(j => j.status === "running" && j.current.pid !== null && (j.current.host ?? host) === host && isSameProcessAlive(j.current.pid, j.current.pidStartedAt))
      if (live.length) {
        throw new ConcordError(`plan "${view.name}" still has running jobs (${live.map(j => j.name).join(", ")}): cancel it or let it finish before cleaning up`)
      }
      const lease = view.lease
      if (lease && lease.expiresAt > Date.now() && !(lease.host === host && !isSameProcessAlive(lease.pid, null))) {
        throw new ConcordError(`plan "${view.name}" is being run by ${lease.holder}: stop it before cleaning up`)
      }
      const root = await repoRoot(path.resolve(view.baseDir, view.git.repo))
      const removed = await removePlanWorktrees(root, store.dir, entry.id)
      out(`removed ${removed} worktree${removed === 1 ? "" : "s"} of plan ${view.name} from ${root}`)
      if (opts.branches) {
        let deleted = 0
        for (const j of view.jobs) {
          for (const a of j.attempts) {
            const branch = a.branch ?? jobBranch(view.git.integrationBranch, j.name, a.n)
            if ((await git(root, ["branch", "-D", "-q", branch], { allowFail: true })).code === 0) deleted++
          }
        }
        await git(root, ["update-ref", "-d", scratchRef(view.git.integrationBranch)], { allowFail: true })
        out(`deleted ${deleted} job branch${deleted === 1 ? "" : "es"}; kept ${view.git.integrationBranch}`)
      }
    })
}
