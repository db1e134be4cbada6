/**
 * `concord diff | merge | sync-worktree | pr`: thin adapters over src/ops/git.ts (the same operations
 * as the MCP tools mc_diff, mc_merge, mc_sync, mc_pr). `concord cleanup` is in cleanup.ts.
 */
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import { diff, pullRequest, requestMerge, syncJob } from "../../ops/git.js"
import { clock, type GlobalOptions, openBackend, type RemoteOptions } from "../context.js"
import { out, printJson } from "../output.js"
import { parseWholeNumber } from "../parse.js"

/** `[PLAN] JOB`: one argument is the job, two are plan and job. */
const planAndJob = (first: string, second: string | undefined) => (second === undefined ? { planRef: undefined, job: first } : { planRef: first, job: second })

export function registerGit(program: Command, globals: () => GlobalOptions): void {
  program
    .command("diff")
    .argument("<plan-or-job>", "JOB, or PLAN when a JOB follows")
    .argument("[job]", "the job (when a PLAN is named first)")
    .option("--stat", "a diffstat instead of the patch")
    .option("--against <base>", "start (default: the commit the attempt started at) or integration (the integration branch's head)")
    .option("--max-bytes <n>", "keep at most this many bytes of the diff (default 65536)")
    .option("--json", "print {files, diff, truncated, ...} as JSON")
    .description("what a job's current attempt changed in its worktree (committed or not), as a unified diff")
    .action(async (first: string, second: string | undefined, opts: { stat?: boolean; against?: string; maxBytes?: string; json?: boolean }) => {
      if (opts.against !== undefined && opts.against !== "start" && opts.against !== "integration")
        throw new InputError(`invalid --against "${opts.against}": expected start or integration`)
      const backend = await openBackend(globals())
      try {
        const r = await diff(backend, {
          ...planAndJob(first, second),
          stat: opts.stat,
          against: opts.against as "start" | "integration" | undefined,
          maxBytes: parseWholeNumber("--max-bytes", opts.maxBytes),
        })
        if (opts.json) return printJson(withoutText(r))
        out(r.text.replace(/\n$/, ""))
      } finally {
        await backend.close()
      }
    })

  program
    .command("merge")
    .argument("<plan-or-job>", "JOB, or PLAN when a JOB follows")
    .argument("[job]", "the job (when a PLAN is named first)")
    .option("--json", "print the result as JSON")
    .option("--remote <url>", "work on a plan kept on a sync server")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("ask for a completed job to be merged: approves its pre_merge checkpoint (supervisor mode) and shows its place in the merge queue")
    .action(async (first: string, second: string | undefined, opts: RemoteOptions & { json?: boolean }) => {
      const backend = await openBackend(globals(), opts)
      try {
        const r = await requestMerge(backend, planAndJob(first, second), clock())
        if (opts.json) return printJson(withoutText(r))
        out(r.text)
      } finally {
        await backend.close()
      }
    })

  program
    .command("sync-worktree")
    .argument("<plan-or-job>", "JOB, or PLAN when a JOB follows")
    .argument("[job]", "the job (when a PLAN is named first)")
    .option("--strategy <s>", "rebase (default) or merge")
    .option("--json", "print the result as JSON")
    .description("bring a job's worktree up to date with the integration branch (rebase or merge); a conflict leaves it as it was")
    .action(async (first: string, second: string | undefined, opts: { strategy?: string; json?: boolean }) => {
      if (opts.strategy !== undefined && opts.strategy !== "rebase" && opts.strategy !== "merge")
        throw new InputError(`invalid --strategy "${opts.strategy}": expected rebase or merge`)
      const backend = await openBackend(globals())
      try {
        const r = await syncJob(backend, { ...planAndJob(first, second), strategy: opts.strategy as "rebase" | "merge" | undefined }, clock())
        if (opts.json) return printJson(withoutText(r))
        out(r.text)
      } finally {
        await backend.close()
      }
    })

  program
    .command("pr")
    .argument("[plan]", "plan id, url or name (default: the only or most recent plan)")
    .option("--title <title>", "title, when this opens the PR (default: the plan's pr.title)")
    .option("--body <text>", "intro text, when this opens the PR (default: the plan's pr.body)")
    .option("--draft", "open it as a draft")
    .option("--json", "print the result as JSON")
    .description("the plan's pull request: open it if the plan completed and it was not opened, else show the recorded result")
    .action(async (planRef: string | undefined, opts: { title?: string; body?: string; draft?: boolean; json?: boolean }) => {
      const backend = await openBackend(globals())
      try {
        const r = await pullRequest(backend, { planRef, title: opts.title, body: opts.body, draft: opts.draft }, clock())
        if (opts.json) return printJson(withoutText(r))
        out(r.text)
      } finally {
        await backend.close()
      }
    })
}

function withoutText<T extends { text: string }>(r: T): Omit<T, "text"> {
  const { text: _text, ...rest } = r
  return rest
}
