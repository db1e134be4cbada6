/** `concord cleanup [PLAN]`: remove the git worktrees a plan kept (src/ops/git.ts cleanup; mc_cleanup is the same). */
import type { Command } from "commander"
import { cleanup } from "../../ops/git.js"
import { type GlobalOptions, openBackend } from "../context.js"
import { out, printJson } from "../output.js"

export function registerCleanup(program: Command, globals: () => GlobalOptions): void {
  program
    .command("cleanup")
    .argument("[plan]", "plan id, url or name")
    .option("--job <name>", "only this job's worktrees (of its attempts that are over)")
    .option("--branches", "also delete the job branches of what is removed, and the scratch ref (the integration branch is kept)")
    .option("--json", "print the result as JSON")
    .description("remove the git worktrees of a git plan (kept when a plan fails, for inspection)")
    .action(async (planRef: string | undefined, opts: { job?: string; branches?: boolean; json?: boolean }) => {
      const backend = await openBackend(globals())
      try {
        const { text, ...r } = await cleanup(backend, { planRef, job: opts.job, branches: opts.branches })
        if (opts.json) return printJson(r)
        out(text)
      } finally {
        await backend.close()
      }
    })
}
