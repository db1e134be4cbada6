import type { Command } from "commander"
import type { DocId } from "../../doc/ids.js"
import { reportDocId } from "../../doc/ids.js"
import { type PlanDocument, readPlan } from "../../doc/plan.js"
import { digestAll, digestReports, type ReportDigest, type ReportsDocument } from "../../doc/reports.js"
import { summarize } from "../../doc/summary.js"
import { mermaidGraph } from "../../doc/graph.js"
import type { PlanStore } from "../../sync/store/PlanStore.js"
import { type GlobalOptions, openStore } from "../context.js"
import { out, printJson } from "../output.js"
import { nextSteps, renderStatus } from "../render.js"

interface StatusOptions {
  json?: boolean
  watch?: boolean
  graph?: boolean
  remote?: string
  token?: string
  ca?: string
}

export function registerStatus(program: Command, globals: () => GlobalOptions): void {
  program
    .command("status")
    .argument("[plan]", "plan id, url or name (default: the only or most recent plan)")
    .option("--json", "print JSON (with --watch: one JSON object per line, per change)")
    .option("--watch", "keep running and redraw as other processes change the plan")
    .option("--graph", "print the dependency graph as Mermaid text")
    .option("--remote <url>", "read the plan from a sync server instead of the local store")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("show a plan's status")
    .action(async (planRef: string | undefined, opts: StatusOptions) => {
      if (opts.remote || opts.token) {
        const { remoteTarget, statusRemote } = await import("../../sync/net/remote-cli.js")
        const target = (await remoteTarget(opts))!
        const log = (l: string) => process.stderr.write(`concord: ${l}\n`)
        return statusRemote({
          target,
          planRef,
          watch: opts.watch,
          log,
          show: (id, plan, reports, redraw) => show("", id, plan, digestAll(reports), opts, planRef ?? id, redraw),
        })
      }
      const store = openStore(globals())
      const entry = await store.resolvePlan(planRef)
      const plan = await store.loadPlan(entry.id)
      const view = readPlan(plan)
      if (opts.graph) return out(mermaidGraph(view))
      const reports = await store.loadReportDigests(entry.id, view.jobs.map(j => j.name))
      if (!opts.watch) return show(store.dir, entry.id, plan, reports, opts, planRef ?? entry.id)
      await watchStatus(store, entry.id, plan, reports, opts, planRef ?? entry.id)
    })
}

function show(
  storeDir: string,
  id: DocId,
  plan: PlanDocument,
  reports: Map<string, ReportDigest>,
  opts: StatusOptions,
  ref: string,
  redraw = false
) {
  const summary = summarize(id, readPlan(plan), reports, Date.now())
  if (opts.json) {
    const line = JSON.stringify(summary)
    return opts.watch ? out(line) : printJson(summary)
  }
  const tty = process.stdout.isTTY === true
  const lines = renderStatus(summary, { color: tty, storeDir })
  const steps = nextSteps(summary, ref)
  if (steps.length) lines.push("", ...steps.map(s => `  ${s}`))
  if (redraw && tty) process.stdout.write("\x1b[2J\x1b[H")
  else if (redraw) out("---")
  out(lines.join("\n"))
}

/** Redraw whenever the plan or a report log changes on disk. Runs until SIGINT/SIGTERM. */
async function watchStatus(
  store: PlanStore,
  id: DocId,
  plan: PlanDocument,
  reports: Map<string, ReportDigest>,
  opts: StatusOptions,
  ref: string
): Promise<void> {
  const jobs = readPlan(plan).jobs.map(j => j.name)
  const byDoc = new Map<string, string>(jobs.map(j => [reportDocId(id, j), j]))
  show(store.dir, id, plan, reports, opts, ref, true)
  let pending: NodeJS.Timeout | undefined
  const schedule = () => {
    // Coalesce bursts of changes into one redraw, without adding visible latency.
    if (!pending) pending = setTimeout(() => ((pending = undefined), show(store.dir, id, plan, reports, opts, ref, true)), 15)
  }
  const watcher = store.docs.watch<unknown>([id, ...byDoc.keys()], (docId, doc) => {
    if (docId === id) plan = doc as PlanDocument
    else reports.set(byDoc.get(docId)!, digestReports(doc as ReportsDocument))
    schedule()
  })
  // Relative times and stale flags change with the clock too.
  const tick = opts.json ? undefined : setInterval(schedule, 5000)
  await new Promise<void>(resolve => {
    const stop = () => resolve()
    process.once("SIGINT", stop)
    process.once("SIGTERM", stop)
  })
  if (tick) clearInterval(tick)
  watcher.close()
}
