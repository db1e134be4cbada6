import type { Command } from "commander"
import { InputError, InvalidTransitionError } from "../../doc/errors.js"
import { getJob, readPlan, setJobStatus } from "../../doc/plan.js"
import { validateReport } from "../../doc/reports.js"
import { canJobTransition } from "../../doc/states.js"
import { clock, type GlobalOptions, openStore } from "../context.js"
import { out } from "../output.js"

interface ReportOptions {
  progress?: string
  plan?: string
  job?: string
  attempt?: string
  remote?: string
  token?: string
  ca?: string
}

function parseNumber(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (v.trim() === "" || !Number.isFinite(n)) throw new InputError(`invalid ${flag} "${v}": expected a number`)
  return n
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
    .option("--remote <url>", "report to a sync server directly (no local store needed)")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("report a job's progress; completed and failed also set the job's status")
    .action(async (status: string, message: string | undefined, opts: ReportOptions) => {
      // Validate everything that needs no store first: bad input writes nothing.
      const progress = parseNumber("--progress", opts.progress)
      const attemptArg = parseNumber("--attempt", opts.attempt ?? process.env.CONCORD_ATTEMPT)
      const checked = validateReport({ status, message, progress, attempt: attemptArg ?? 1 })
      const jobName = opts.job ?? process.env.CONCORD_JOB
      if (!jobName) throw new InputError("no job given: use --job NAME or set CONCORD_JOB")
      if (opts.remote || opts.token) {
        const { remoteTarget, reportRemote } = await import("../../sync/net/remote-cli.js")
        const target = (await remoteTarget(opts))!
        return out(await reportRemote({ target, planRef: opts.plan ?? process.env.CONCORD_PLAN, job: jobName, attempt: attemptArg, report: checked, now: clock() }))
      }

      const store = openStore(globals())
      const entry = await store.resolvePlan(opts.plan ?? process.env.CONCORD_PLAN)
      const job = getJob(readPlan(await store.loadPlan(entry.id)), jobName)
      const attempt = attemptArg ?? job.attempt
      if (!job.attempts.some(a => a.n === attempt)) {
        throw new InputError(`job "${jobName}" has no attempt ${attempt} (current is ${job.attempt})`)
      }
      const now = clock()
      await store.appendReport(entry.id, jobName, { ...checked, attempt }, now())

      // The report is stored. completed / failed also move the attempt's status, where allowed.
      let effect = ""
      if (checked.status === "completed" || checked.status === "failed") {
        const to = checked.status
        try {
          await store.updatePlan(entry.id, doc => {
            const cur = getJob(readPlan(doc), jobName).attempts.find(a => a.n === attempt)!
            if (cur.status === to || !canJobTransition(cur.status, to)) {
              throw new InvalidTransitionError(`job "${jobName}" attempt ${attempt}`, cur.status, to)
            }
            return setJobStatus(
              doc,
              jobName,
              to,
              to === "failed" ? { attempt, reason: checked.message || "reported failed", failureKind: "reported_failed" } : { attempt },
              now()
            )
          })
          effect = `; job ${jobName} #${attempt} is now ${to}`
        } catch (e) {
          if (!(e instanceof InvalidTransitionError)) throw e
          effect = `; job status unchanged (${e.from})`
          if (e.from !== to) process.stderr.write(`concord: note: report stored, but ${e.message}\n`)
        }
      }
      out(`reported ${checked.status}${checked.progress !== null ? ` ${checked.progress}%` : ""} for ${jobName} #${attempt}${effect}`)
    })
}
