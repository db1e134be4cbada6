/** Human control from any process: run the orchestrator, approve checkpoints, retry, skip, cancel. */
import { existsSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"
import type { Command } from "commander"
import { serveEndpoint } from "../../ops/endpoint.js"
import { readPlan } from "../../doc/plan.js"
import { type ApproveInput, approve } from "../../ops/approve.js"
import { cancel, unnamedCancelTarget } from "../../ops/cancel.js"
import { LocalBackend } from "../../ops/local.js"
import { resolvePlan } from "../../ops/resolve.js"
import { confirm } from "../confirm.js"
import { summarize } from "../../doc/summary.js"
import { waitForSignal } from "../../lib/async.js"
import { runPlan } from "../../orchestrator/runner.js"
import { printable } from "../../orchestrator/worktree/policy.js"
import type { PlanStore } from "../../sync/store/PlanStore.js"
import { clock, type GlobalOptions, openBackend, openStore, type RemoteOptions } from "../context.js"
import { out, printJson, redraw, say, type Text } from "../output.js"
import { nextSteps, renderStatus } from "../render.js"

/**
 * The directory holding the `concord` command, so a job's PATH finds the same concord that runs it:
 * the package's bin/, found walking up from this module (compiled or bundled, it lives under dist/).
 */
function concordBinDir(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (existsSync(path.join(dir, "bin", "concord"))) return path.join(dir, "bin")
    const parent = path.dirname(dir)
    if (parent === dir) return undefined
    dir = parent
  }
}

/** A status table redrawn in place on a terminal, with the latest events below it. */
function liveView(store: PlanStore, id: string) {
  const events: string[] = []
  let drawing = Promise.resolve()
  let queued = false
  const draw = async () => {
    const view = readPlan(await store.loadPlan(id))
    const reports = await store.loadReportDigests(
      id,
      view.jobs.map(j => j.name)
    )
    const lines: Text[] = renderStatus(summarize(id, view, reports, Date.now()), { storeDir: store.dir })
    redraw([...lines, "", ...events.slice(-10)])
  }
  const refresh = () => {
    if (queued) return
    queued = true
    drawing = drawing
      .then(() => new Promise(r => setTimeout(r, 100)))
      .then(() => ((queued = false), draw()))
      .catch(() => {})
  }
  const timer = setInterval(refresh, 1000)
  return {
    event(line: string) {
      events.push(line)
      refresh()
    },
    refresh,
    async close() {
      clearInterval(timer)
      await drawing
      redraw(events)
    },
  }
}

export function registerControl(program: Command, globals: () => GlobalOptions): void {
  program
    .command("run")
    .argument("[plan]", "plan id, url or name (default: the only or most recent plan)")
    .option("--wait", "keep running through checkpoints until approvals arrive")
    .option("--quiet", "print only the final status")
    .option("--live", "on a terminal, redraw a live status table above the event log")
    .option("--remote <url>", "orchestrate a plan kept on a sync server (this store mirrors it during the run)")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description(
      "orchestrate a plan: launch its jobs, watch them, stop at checkpoints (exit 0 completed, 1 failed or canceled, 3 waiting at a checkpoint, 130 interrupted: jobs keep running and the next run adopts them)"
    )
    .action(async (planRef: string | undefined, opts: { wait?: boolean; quiet?: boolean; live?: boolean; remote?: string; token?: string; ca?: string }) => {
      const store = openStore(globals())
      const remote = opts.remote || opts.token ? await (await import("../remote.js")).openRemoteRun(store, opts, planRef) : undefined
      const entry = await resolvePlan(new LocalBackend(store), remote?.planId ?? planRef)
      // Ctrl-C (or SIGTERM) interrupts the orchestrator only: job processes keep running detached.
      const ac = new AbortController()
      const finished = new AbortController()
      void waitForSignal(["SIGINT", "SIGTERM"], finished.signal).then(s => s && ac.abort())
      const t0 = Date.now()
      const stamp = () => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`
      const live = opts.live && process.stdout.isTTY === true && !opts.quiet ? liveView(store, entry.id) : undefined
      const result = await runPlan(store, entry.id, {
        wait: opts.wait,
        binDir: concordBinDir(),
        signal: ac.signal,
        onEvent: opts.quiet ? undefined : line => (live ? live.event(`${stamp()} ${line}`) : out(`${stamp()} ${line}`)),
        onView: live ? () => live.refresh() : undefined,
        // reports from this machine's jobs (concord report, concord mcp) come in through it
        serve: (id, poke) => serveEndpoint(store.dir, id, { onStatusChange: poke, onWarning: w => say(`warning: ${w}`) }),
      })
      finished.abort()
      await live?.close()
      // Read the final state after the runner let go of the plan (lease released).
      const view = readPlan(await store.loadPlan(entry.id))
      const reports = await store.loadReportDigests(
        entry.id,
        view.jobs.map(j => j.name)
      )
      const summary = summarize(entry.id, view, reports, Date.now())
      out("")
      out(renderStatus(summary, { storeDir: store.dir }))
      const ref = planRef ?? entry.id
      const steps = nextSteps(summary, ref)
      const pr = view.git?.prResult
      if (pr) {
        out("")
        out(printable(pr.url ? `pull request: ${pr.url}` : `pull request not opened (${pr.manual ?? "manual"}); open it with:\n  ${pr.command}`))
      }
      if (result.code === 130) {
        const live = summary.jobs.filter(j => j.status === "running").length
        out("")
        out(
          `Interrupted. ${live} running job${live === 1 ? "" : "s"} keep${live === 1 ? "s" : ""} running detached (with any job still in its grace period); ` +
            `the next \`concord run ${ref}\` adopts them. To stop them instead: concord cancel ${ref}`
        )
      } else if (result.code === 3) {
        out("")
        out(`Waiting at checkpoint ${summary.checkpoint ?? ""}. ${steps.length ? "To go on:" : ""}`)
        for (const s of steps) out(`  ${s}`)
        out(`then: concord run ${ref}${opts.remote ? ` --remote ${opts.remote} --token ...` : ""}`)
      }
      process.exitCode = result.code
      await remote?.close()
    })

  program
    .command("approve")
    .argument("[plan]", "plan id, url or name")
    .option("--checkpoint <name>", "the checkpoint you approve (refused if the plan waits at another one)")
    .option("--retry <job>", "retry a failed job: a new attempt with a fresh process")
    .option("--skip <job>", "skip a job: it is canceled and its dependents go on without it")
    .option("--json", "print the result as JSON")
    .option("--remote <url>", "approve on a sync server instead of the local store")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("approve a pending plan or the current checkpoint, optionally retrying or skipping a job")
    .action(async (planRef: string | undefined, opts: ApproveInput & RemoteOptions & { json?: boolean }) => {
      const backend = await openBackend(globals(), opts)
      try {
        const r = await approve(backend, { planRef, checkpoint: opts.checkpoint, retry: opts.retry, skip: opts.skip }, clock())
        if (opts.json) return printJson(r)
        for (const l of r.lines) out(l)
      } finally {
        await backend.close()
      }
    })

  program
    .command("cancel")
    .argument("[plan]", "plan id, url or name")
    .option("--json", "print the result as JSON")
    .option("--remote <url>", "cancel a plan on a sync server (its orchestrators stop their processes)")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("cancel a plan: record canceled for it and every unfinished job, and stop their processes")
    .option("-y, --yes", "do not ask (needed without a terminal when no plan is named and the store has several)")
    .action(async (planRef: string | undefined, opts: RemoteOptions & { json?: boolean; yes?: boolean }) => {
      const backend = await openBackend(globals(), opts)
      try {
        const target = await unnamedCancelTarget(backend, planRef)
        if (target) {
          await confirm(`cancel plan "${target.name}" (${target.id}), the newest of ${target.open} plans?`, {
            yes: opts.yes,
            flagHint: "name the plan, or pass --yes",
          })
          planRef = target.id
        }
        const r = await cancel(backend, { planRef }, clock())
        if (opts.json) return printJson(r)
        out(r.text)
      } finally {
        await backend.close()
      }
    })
}
