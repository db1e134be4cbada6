/** `concord report`: a thin adapter over src/ops/report.ts. */
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import { report } from "../../ops/report.js"
import { clock, type GlobalOptions, openBackend, type RemoteOptions } from "../context.js"
import { out, printJson, say } from "../output.js"
import { parseWholeNumber, parseDecimal } from "../parse.js"

interface ReportOptions extends RemoteOptions {
  progress?: string
  plan?: string
  job?: string
  attempt?: string
  json?: boolean
}

export function registerReport(program: Command, globals: () => GlobalOptions): void {
  program
    .command("report")
    .argument("<status>", "working | progress | blocked | needs_review | completed | failed")
    .argument("[message]", "what happened")
    .option("--progress <n>", "progress percentage, 0..100")
    .option("--plan <id>", "plan (default $CONCORD_PLAN, else the store's plan)")
    .option("--job <name>", "job (default $CONCORD_JOB)")
    .option("--attempt <n>", "attempt (default $CONCORD_ATTEMPT, else the current attempt)")
    .option("--json", "print the result as JSON")
    .option("--remote <url>", "report to a sync server directly (no local store needed)")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("report a job's progress; completed and failed also set the job's status")
    .action(async (status: string, message: string | undefined, opts: ReportOptions) => {
      const progress = parseDecimal("--progress", opts.progress)
      const attempt = parseWholeNumber("--attempt", opts.attempt ?? process.env.CONCORD_ATTEMPT)
      const job = opts.job ?? process.env.CONCORD_JOB
      if (!job) throw new InputError("no job given: use --job NAME or set CONCORD_JOB")
      const backend = await openBackend(globals(), opts)
      try {
        const r = await report(backend, { planRef: opts.plan ?? process.env.CONCORD_PLAN, job, attempt, status, message, progress }, clock())
        if (opts.json) return printJson(r)
        if (r.note) say(`note: ${r.note}`)
        out(opts.remote ? `${r.text} (on ${backend.where.replace(/^server /, "")})` : r.text)
      } finally {
        await backend.close()
      }
    })
}
