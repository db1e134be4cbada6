/**
 * `concord report`: a thin adapter over src/ops/report.ts, through `concord run`'s local endpoint when it
 * serves the plan on this machine (src/ops/endpoint.ts). The command's words are declared once here and
 * used by both the full CLI and the lean start-up of src/cli/fast.ts, which answers a job's report through
 * the endpoint without loading Automerge.
 */
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import type { ReportInput, ReportResult } from "../../ops/report.js"
import type { GlobalOptions, RemoteOptions } from "../context.js"
import { out, printJson, say } from "../output.js"
import { parseDecimal, parseWholeNumber } from "../parse.js"

export interface ReportOptions extends RemoteOptions {
  progress?: string
  plan?: string
  job?: string
  attempt?: string
  id?: string
  json?: boolean
}

/** The `report` command's arguments and options (no action). */
export function declareReport(program: Command): Command {
  return program
    .command("report")
    .argument("<status>", "working | progress | blocked | needs_review | completed | failed")
    .argument("[message]", "what happened")
    .option("--progress <n>", "progress percentage, 0..100")
    .option("--plan <id>", "plan (default $CONCORD_PLAN, else the store's plan)")
    .option("--job <name>", "job (default $CONCORD_JOB)")
    .option("--attempt <n>", "attempt (default $CONCORD_ATTEMPT, else the current attempt)")
    .option("--id <id>", "an id for this report (8-64 of A-Z a-z 0-9 _ -): sending it again stores it once")
    .option("--json", "print the result as JSON")
    .option("--remote <url>", "report to a sync server directly (no local store needed)")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("report a job's progress; completed and failed also set the job's status")
}

/** The report the command's words ask for (flags first, then the job's environment). */
export function reportInput(status: string, message: string | undefined, opts: ReportOptions, env: NodeJS.ProcessEnv = process.env): ReportInput {
  const progress = parseDecimal("--progress", opts.progress)
  const attempt = parseWholeNumber("--attempt", opts.attempt ?? env.CONCORD_ATTEMPT)
  const job = opts.job ?? env.CONCORD_JOB
  if (!job) throw new InputError("no job given: use --job NAME or set CONCORD_JOB")
  return { planRef: opts.plan ?? env.CONCORD_PLAN, job, attempt, status, message, progress, rid: opts.id }
}

export function printReport(r: ReportResult, opts: ReportOptions, where?: string): void {
  if (opts.json) return printJson(r)
  if (r.note) say(`note: ${r.note}`)
  out(where ? `${r.text} (on ${where})` : r.text)
}

export function registerReport(program: Command, globals: () => GlobalOptions): void {
  declareReport(program).action(async (status: string, message: string | undefined, opts: ReportOptions) => {
    const input = reportInput(status, message, opts)
    const [{ reportRouted }, { clock, openBackend }] = await Promise.all([import("../../ops/endpoint.js"), import("../context.js")])
    const backend = await openBackend(globals(), opts)
    try {
      const r = await reportRouted(backend, input, clock())
      printReport(r, opts, opts.remote ? backend.where.replace(/^server /, "") : undefined)
    } finally {
      await backend.close()
    }
  })
}
