/** `concord status`: a thin adapter over src/ops/status.ts (local store or `--remote`). */
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import { mermaidGraph } from "../../doc/graph.js"
import { outcome } from "../../doc/summary.js"
import { planAt } from "../../ops/at.js"
import { parseTime } from "../parse.js"
import { readPlan } from "../../doc/plan.js"
import { resolvePlan } from "../../ops/resolve.js"
import { status, type StatusResult, watchStatus } from "../../ops/status.js"
import { waitForStopSignal } from "../signals.js"
import { type GlobalOptions, openBackend, type RemoteOptions } from "../context.js"
import { out, printJson, printJsonLine, redraw as redrawScreen, say } from "../output.js"
import { nextStepCommands, renderStatus } from "../render.js"

interface StatusOptions extends RemoteOptions {
  json?: boolean
  watch?: boolean
  graph?: boolean
  exitStatus?: boolean
  at?: string
}

export function registerStatus(program: Command, globals: () => GlobalOptions): void {
  program
    .command("status")
    .argument("[plan]", "plan id, url or name (default: the only or most recent plan)")
    .option("--json", "print JSON (with --watch: one JSON object per line, per change)")
    .option("--watch", "keep running and redraw as other processes change the plan")
    .option("--graph", "print the dependency graph as Mermaid text")
    .option("--at <time|change>", "the plan as it was at a past moment: an ISO time, epoch ms, a duration ago (10m, 2h), or a change hash from concord history")
    .option(
      "--exit-status",
      "with --watch: exit when the plan finishes or waits at a checkpoint, with run's exit codes (0 completed, 1 failed or canceled, 3 at a checkpoint)"
    )
    .option("--remote <url>", "read the plan from a sync server instead of the local store")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("show a plan's status")
    .action(async (planRef: string | undefined, opts: StatusOptions) => {
      if (opts.exitStatus && !opts.watch) throw new InputError("--exit-status needs --watch (status --watch --exit-status waits for the plan to finish)")
      const backend = await openBackend(globals(), opts, { watch: opts.watch, retry: !!opts.watch })
      try {
        if (opts.graph) return out(mermaidGraph(readPlan((await resolvePlan(backend, planRef)).doc)))
        if (opts.at !== undefined) {
          if (opts.watch) throw new InputError("--at shows one past moment; it cannot be combined with --watch")
          const point = /^[0-9a-f]{64}$/.test(opts.at) ? { change: opts.at } : { at: parseTime("--at", opts.at) }
          const r = await planAt(backend, { planRef, ...point })
          if (opts.json) return printJson({ ...r.summary, at: r.at, heads: r.heads, included: r.included, total: r.total })
          const when = r.at === null ? "before its first change" : `as of ${new Date(r.at).toISOString()}`
          out([
            `(the plan ${when}: ${r.included} of ${r.total} changes${r.entry ? `; last: ${r.entry.by}: ${r.entry.did}` : ""})`,
            ...renderStatus(r.summary, { storeDir: backend.storeDir ?? "" }),
          ])
          return
        }
        if (!opts.watch) {
          const s = await status(backend, planRef)
          show(s, opts, planRef)
          for (const w of s.warnings) say(`warning: ${w}`)
          return
        }
        const warned = new Set<string>()
        const ac = new AbortController()
        const stop = waitForStopSignal(ac)
        try {
          await watchStatus(
            backend,
            planRef,
            s => {
              show(s, opts, planRef, true)
              // each warning once, not on every redraw
              for (const w of s.warnings.filter(x => !warned.has(x))) warned.add(w), say(`warning: ${w}`)
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
    const v = { ...s.summary, store: s.storeDir, warnings: s.warnings, failureTails: s.failureTails }
    return opts.watch ? printJsonLine(v) : printJson(v)
  }
  const lines = renderStatus(s.summary, { storeDir: s.storeDir ?? "" })
  const steps = nextStepCommands(s.next, planRef ?? s.summary.id)
  if (steps.length) lines.push("", ...steps.map(l => `  ${l}`))
  for (const [job, tail] of Object.entries(s.failureTails)) lines.push("", `  last lines of ${job}'s output:`, ...tail.map(l => `    ${l}`))
  if (redraw) redrawScreen(lines)
  else out(lines)
}
