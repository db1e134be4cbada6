/** `concord logs [PLAN] JOB`: a job attempt's output, optionally followed live (src/ops/logs.ts). */
import type { Command } from "commander"
import { followLog, followStart, tailLog } from "../../ops/logs.js"
import { type GlobalOptions, openBackend } from "../context.js"
import { out, printJson, printJsonLine } from "../output.js"
import { parseWholeNumber } from "../parse.js"
import { waitForStopSignal } from "../signals.js"

export function registerLogs(program: Command, globals: () => GlobalOptions): void {
  program
    .command("logs")
    .argument("<plan-or-job>", "JOB, or PLAN when a JOB follows")
    .argument("[job]", "the job (when a PLAN is named first)")
    .option("--attempt <n>", "which attempt (default: the current one)")
    .option("-n, --lines <n>", "how many lines from the end (default 100)")
    .option("-f, --follow", "keep printing the output as the job writes it (until Ctrl-C)")
    .option("--json", "print {plan, job, attempt, file, lines} as JSON (with --follow: one JSON line per output line)")
    .description("a job's output (stdout and stderr of its process), the last lines, optionally followed live")
    .action(async (first: string, second: string | undefined, opts: { attempt?: string; lines?: string; follow?: boolean; json?: boolean }) => {
      const planRef = second === undefined ? undefined : first
      const job = second ?? first
      const input = { planRef, job, attempt: parseWholeNumber("--attempt", opts.attempt), lines: parseWholeNumber("--lines", opts.lines) }
      const backend = await openBackend(globals())
      try {
        const tail = await tailLog(backend, input)
        if (opts.json && !opts.follow) return printJson(tail)
        if (!opts.follow) {
          for (const line of tail.lines) out(line)
          return
        }
        const start = followStart(tail)
        if (opts.json) for (const line of start.lines) printJsonLine({ job, attempt: tail.attempt, line })
        else for (const line of start.lines) out(line)
        const ac = new AbortController()
        const stop = waitForStopSignal(ac)
        try {
          await followLog(
            backend,
            { planRef: tail.planId, job, attempt: tail.attempt },
            lines => {
              for (const line of lines) opts.json ? printJsonLine({ job, attempt: tail.attempt, line }) : out(line)
            },
            ac.signal,
            { from: start.from }
          )
        } finally {
          stop()
        }
      } finally {
        await backend.close()
      }
    })
}
