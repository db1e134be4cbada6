/** `concord status`: a thin adapter over src/ops/status.ts (local store or `--remote`). */
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import { mermaidGraph } from "../../doc/graph.js"
import { outcome } from "../../doc/summary.js"
import { readPlan } from "../../doc/plan.js"
import { resolvePlan } from "../../ops/resolve.js"
import { status, type StatusResult, watchStatus } from "../../ops/status.js"
import { quarantineSummary } from "../../sync/storage/quarantine.js"
import { waitForStopSignal } from "../signals.js"
import { type GlobalOptions, openBackend, type RemoteOptions } from "../context.js"
import { out, printJson, printJsonLine, redraw as redrawScreen, say } from "../output.js"
import { nextStepCommands, renderStatus } from "../render.js"

interface StatusOptions extends RemoteOptions {
  json?: boolean
  watch?: boolean
  graph?: boolean
  exitStatus?: boolean
}

export function registerStatus(program: Command, globals: () => GlobalOptions): void {
  program
    .command("status")
    .argument("[plan]", "plan id, url or name (default: the only or most recent plan)")
    .option("--json", "print JSON (with --watch: one JSON object per line, per change)")
    .option("--watch", "keep running and redraw as other processes change the plan")
    .option("--graph", "print the dependency graph as Mermaid text")
    .option("--exit-status", "with --watch: exit when the plan finishes or waits at a checkpoint, with run's exit codes (0 completed, 1 failed or canceled, 3 at a checkpoint)")
    .option("--remote <url>", "read the plan from a sync server instead of the local store")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("show a plan's status")
    .action(async (planRef: string | undefined, opts: StatusOptions) => {
      if (opts.exitStatus && !opts.watch) throw new InputError("--exit-status needs --watch (status --watch --exit-status waits for the plan to finish)")
      const backend = await openBackend(globals(), opts, { watch: opts.watch, retry: !!opts.watch })
      try {
        if (opts.graph) return out(mermaidGraph(readPlan((await resolvePlan(backend, planRef)).doc)))
        if (!opts.watch) {
          const s = await status(backend, planRef)
          show(s, opts, planRef)
          if (s.storeDir) await warnQuarantine(s.storeDir)
          return
        }
        let checkedQuarantine = false
        const ac = new AbortController()
        const stop = waitForStopSignal(ac)
        try {
          await watchStatus(
            backend,
            planRef,
            s => {
              show(s, opts, planRef, true)
              if (!checkedQuarantine && s.storeDir) {
                checkedQuarantine = true
                void warnQuarantine(s.storeDir)
              }
              const end = opts.exitStatus ? outcome(s.summary) : null
              if (end && !ac.signal.aborted) {
                say(end.why)
                process.exitCode = end.code
                ac.abort()
              }
            },
            ac.signal,
            { tickMs: opts.json ? undefined : 5000 }
          )
        } finally {
          stop()
        }
      } finally {
        await backend.close()
      }
    })
}

function show(s: StatusResult, opts: StatusOptions, planRef: string | undefined, redraw = false) {
  if (opts.json) {
    const v = { ...s.summary, store: s.storeDir, warnings: s.warnings }
    return opts.watch ? printJsonLine(v) : printJson(v)
  }
  const lines = renderStatus(s.summary, { storeDir: s.storeDir ?? "" })
  const steps = nextStepCommands(s.next, planRef ?? s.summary.id)
  if (steps.length) lines.push("", ...steps.map(l => `  ${l}`))
  for (const w of s.warnings) lines.push(`  warning: ${w}`)
  if (redraw) redrawScreen(lines)
  else out(lines)
}

/** One warning line when the store holds quarantined chunk files. */
async function warnQuarantine(storeDir: string): Promise<void> {
  const q = await quarantineSummary(storeDir)
  if (q.count === 0) return
  const files = q.count === 1 ? "1 quarantined chunk file" : `${q.count} quarantined chunk files`
  process.stderr.write(`concord: warning: ${files} in ${q.dir}; run "concord doctor" to restore the valid ones and list the rest\n`)
}
