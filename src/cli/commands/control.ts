/** Human control from any process: run the orchestrator, approve checkpoints, retry, skip, cancel. */
import { randomBytes } from "node:crypto"
import { existsSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import { approveCheckpoint, cancelPlan, getJob, type PlanDocument, readPlan, retryJob, skipJob } from "../../doc/plan.js"
import { summarize } from "../../doc/summary.js"
import { isSameProcessAlive, signalJob } from "../../orchestrator/proc.js"
import { runPlan } from "../../orchestrator/runner.js"
import type { PlanStore } from "../../sync/store/PlanStore.js"
import { clock, type GlobalOptions, hostName, openStore } from "../context.js"
import { out } from "../output.js"
import { nextSteps, renderStatus } from "../render.js"

/**
 * The directory holding the `concord` command, so a job's PATH finds the same concord that runs it:
 * the package's bin/, found walking up from this module (compiled or bundled, it lives under dist/).
 */
export function concordBinDir(): string | undefined {
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
    const reports = await store.loadReportDigests(id, view.jobs.map(j => j.name))
    const lines = renderStatus(summarize(id, view, reports, Date.now()), { color: true, storeDir: store.dir })
    process.stdout.write("\x1b[2J\x1b[H" + lines.join("\n") + "\n\n" + events.slice(-10).join("\n") + "\n")
  }
  const refresh = () => {
    if (queued) return
    queued = true
    drawing = drawing.then(() => new Promise(r => setTimeout(r, 100))).then(() => ((queued = false), draw())).catch(() => {})
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
      process.stdout.write("\x1b[2J\x1b[H" + events.join("\n") + "\n")
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
    .description("orchestrate a plan: launch its jobs, watch them, stop at checkpoints (exit 0 completed, 1 failed or canceled, 3 waiting at a checkpoint)")
    .action(async (planRef: string | undefined, opts: { wait?: boolean; quiet?: boolean; live?: boolean; remote?: string; token?: string; ca?: string }) => {
      const store = openStore(globals())
      const remote = opts.remote || opts.token ? await (await import("../../sync/net/remote-cli.js")).openRemoteRun(store, opts, planRef) : undefined
      const entry = await store.resolvePlan(remote?.planId ?? planRef)
      const ac = new AbortController()
      const onSignal = () => ac.abort()
      process.once("SIGINT", onSignal)
      process.once("SIGTERM", onSignal)
      const t0 = Date.now()
      const stamp = () => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`
      const live = opts.live && process.stdout.isTTY === true && !opts.quiet ? liveView(store, entry.id) : undefined
      const result = await runPlan(store, entry.id, {
        wait: opts.wait,
        binDir: concordBinDir(),
        signal: ac.signal,
        onEvent: opts.quiet ? undefined : line => (live ? live.event(`${stamp()} ${line}`) : out(`${stamp()} ${line}`)),
        onView: live ? () => live.refresh() : undefined,
      })
      await live?.close()
      process.off("SIGINT", onSignal)
      process.off("SIGTERM", onSignal)
      // Read the final state after the runner let go of the plan (lease released).
      const view = readPlan(await store.loadPlan(entry.id))
      const reports = await store.loadReportDigests(entry.id, view.jobs.map(j => j.name))
      const summary = summarize(entry.id, view, reports, Date.now())
      out("")
      out(renderStatus(summary, { color: process.stdout.isTTY === true, storeDir: store.dir }).join("\n"))
      const ref = planRef ?? entry.id
      const steps = nextSteps(summary, ref)
      if (result.code === 3) {
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
    .description("approve a pending plan or the current checkpoint, optionally retrying or skipping a job")
    .action(async (planRef: string | undefined, opts: { checkpoint?: string; retry?: string; skip?: string }) => {
      const store = openStore(globals())
      const entry = await store.resolvePlan(planRef)
      const now = clock()
      const done: string[] = []
      await store.updatePlan(entry.id, doc => {
        let d: PlanDocument = doc
        const view = readPlan(d)
        if (opts.retry) {
          getJob(view, opts.retry)
          d = retryJob(d, opts.retry, now())
          done.push(`${opts.retry} will run again as attempt ${getJob(readPlan(d), opts.retry).attempt}`)
        }
        if (opts.skip) {
          getJob(view, opts.skip)
          d = skipJob(d, opts.skip, now())
          done.push(`${opts.skip} skipped; its dependents go on without it`)
        }
        // A retry or skip of one job does not silently approve a checkpoint raised for another job.
        const cpJob = view.checkpointContext?.jobName
        const forOtherJob =
          !opts.checkpoint && (opts.retry || opts.skip) && typeof cpJob === "string" && cpJob !== opts.retry && cpJob !== opts.skip
        if (view.checkpoint && forOtherJob) {
          done.push(`checkpoint ${view.checkpoint} (job ${cpJob}) left waiting: approve it with --checkpoint ${view.checkpoint}`)
        } else if (view.checkpoint) {
          const r = approveCheckpoint(d, { checkpoint: opts.checkpoint, id: `${Date.now()}-${randomBytes(4).toString("hex")}` }, now())
          d = r.doc
          const approval = r.approval
          done.push(`approved checkpoint ${approval.checkpoint} #${approval.seq} as ${approval.by}`)
        } else if (opts.checkpoint || (!opts.retry && !opts.skip)) {
          throw new InputError(`plan "${view.name}" is ${view.status} and not waiting at a checkpoint: nothing to approve`)
        }
        return d
      })
      for (const l of done) out(l)
      const lease = readPlan(await store.loadPlan(entry.id)).lease
      out(lease && lease.expiresAt > Date.now() ? `the running orchestrator (${lease.holder}) acts on it` : `no orchestrator is running: continue with  concord run ${planRef ?? entry.id}`)
    })

  program
    .command("cancel")
    .argument("[plan]", "plan id, url or name")
    .description("cancel a plan: record canceled for it and every unfinished job, and stop their processes")
    .action(async (planRef: string | undefined) => {
      const store = openStore(globals())
      const entry = await store.resolvePlan(planRef)
      const before = readPlan(await store.loadPlan(entry.id))
      await store.updatePlan(entry.id, doc => cancelPlan(doc, clock()()))
      // The running orchestrator stops its processes when it sees the cancel; stop the ones on this
      // machine here too, in case no orchestrator is running.
      const host = hostName()
      let stopped = 0
      for (const j of before.jobs) {
        const a = j.current
        if (j.status === "running" && a.pid !== null && (a.host ?? host) === host && isSameProcessAlive(a.pid, a.pidStartedAt)) {
          if (signalJob(a.pid, "SIGTERM")) stopped++
        }
      }
      out(`canceled plan ${before.name}; ${stopped} job process${stopped === 1 ? "" : "es"} on ${os.hostname()} signaled to stop`)
    })
}
