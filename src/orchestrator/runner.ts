/**
 * The runner: the imperative shell around the scheduler. It holds the plan's lock and lease, and runs
 * rounds: gather what the job supervisor saw (exits, live process groups) and what became of jobs
 * nobody watches, ask `decide()` what to do, apply the round's actions to one loaded plan document and
 * save it once, then start the processes of the jobs it just recorded as running.
 *
 * All state that matters lives in the document and in the files the job wrappers leave next to their
 * logs (supervisor.ts): a runner killed with SIGKILL at any moment loses nothing, and the next one
 * adopts every live process the plan started, learns how the others ended, and never launches an
 * attempt twice. Policy (lease takeover, liveness, cwd, environment, stop escalation, how an action
 * changes the document) is pure and lives in policy.ts and scheduler.ts.
 */
import { existsSync, statSync } from "node:fs"
import { actorLabel, type WriteContext } from "../doc/actor.js"
import { ConcordError, NotFoundError } from "../doc/errors.js"
import { queueBusy } from "../doc/merge.js"
import { acquireLease, getJob, type PlanView, readPlan, releaseLease, updateAttempt } from "../doc/plan.js"
import { sleep } from "../lib/async.js"
import { writeMcpConfigs } from "../mcp/config.js"
import { hostName } from "../lib/host.js"
import { StoreGoneError } from "../sync/storage/StoreError.js"
import type { PlanStore } from "../sync/store/PlanStore.js"
import { acquirePlanLock } from "./lock.js"
import {
  applyActions,
  jobEnv,
  leaseDecision,
  liveLeaseHolder,
  observedRecords,
  recordedProcesses,
  remoteLost,
  resolveJobCwd,
  untrackedLiveness,
} from "./policy.js"
import { isSameProcessAlive } from "./proc.js"
import { type Action, decide, key, type LaunchFailure, type ProcessExit } from "./scheduler.js"
import { type JobSupervisor, logPath, ProcessSupervisor } from "./supervisor.js"
import { GitPlan } from "./worktree/queue.js"

export interface RunOptions {
  /** Keep running through checkpoints until approvals arrive (else return with code 3). */
  wait?: boolean
  /** One line per event (job started, completed, failed, checkpoint raised, ...). */
  onEvent?: (line: string) => void
  /** Called after every round with the fresh plan view (for live status). */
  onView?: (view: PlanView) => void
  leaseTtlMs?: number
  tickMs?: number
  /** Delay between SIGTERM and SIGKILL when stopping a job. */
  killGraceMs?: number
  /** Directory containing the `concord` command, prepended to every job's PATH. */
  binDir?: string
  /** Relative job cwds resolve against this when the plan's directory does not exist here (default: cwd). */
  runDir?: string
  /** An attempt recorded running with no trace of a process yet may still be starting for this long. */
  launchWindowMs?: number
  /** The job supervisor (default: real processes). */
  supervisor?: JobSupervisor
  /**
   * Serve the plan's local endpoint while this runner holds the lease (`concord run` passes
   * src/ops/endpoint.ts's serveEndpoint); `poke` wakes the runner when a report changed a job's status.
   */
  serve?: (planId: string, poke: () => void) => Promise<{ close(): Promise<void> }>
  signal?: AbortSignal
}

export interface RunResult {
  /** 0 completed, 1 failed or canceled, 3 waiting at a checkpoint, 130 interrupted. */
  code: 0 | 1 | 3 | 130
  why: string
  view: PlanView
}

const pidAlive = (pid: number) => isSameProcessAlive(pid, null)

export async function runPlan(store: PlanStore, planId: string, opts: RunOptions = {}): Promise<RunResult> {
  const host = hostName()
  const holder = actorLabel("orchestrator", host, process.pid)
  const ctx = (): WriteContext => ({ by: holder, now: Date.now() })
  const event = opts.onEvent ?? (() => {})
  const ttl = opts.leaseTtlMs ?? 60_000
  const tickMs = opts.tickMs ?? 500
  const launchWindowMs = opts.launchWindowMs ?? 10_000
  const runDir = opts.runDir ?? process.cwd()
  const load = async () => readPlan(await store.loadPlan(planId))
  // Set once the plan was first loaded: a plan that disappears after that (its store deleted) is a failure
  // of this run (exit 1, see the catch below), not a usage error.
  let started = false

  const releaseLock = await acquirePlanLock(
    store.dir,
    planId,
    { holder, host, pid: process.pid, startedAt: Date.now() },
    { liveHolder: async () => liveLeaseHolder((await load()).lease, host, Date.now(), pidAlive), onWarning: event }
  )
  let wake: (() => void) | undefined
  const poke = () => wake?.()
  const sup =
    opts.supervisor ?? new ProcessSupervisor({ storeDir: store.dir, planId, host, killGraceMs: opts.killGraceMs ?? 5_000, onChange: poke, onEvent: event })
  let watcher: { close(): void } | undefined
  let leaseTimer: NodeJS.Timeout | undefined
  const lease = { holder, host, pid: process.pid, ttlMs: ttl }
  const launchFailed: LaunchFailure[] = []
  // Git plans (`repo:`): a worktree per attempt and the merge queue, worked by this lease holder.
  let gitPlan: GitPlan | null = null
  let endpoint: { close(): Promise<void> } | undefined

  try {
    // The document half of "only one orchestrator": a lease with holder and expiry.
    await store.updatePlan(planId, doc => {
      const d = leaseDecision(readPlan(doc).lease, { holder, host }, Date.now(), pidAlive)
      if (!d.take) throw new ConcordError(d.why, 1)
      return acquireLease(doc, lease, ctx(), d.takeOver)
    })
    leaseTimer = setInterval(
      () => {
        store.updatePlan(planId, doc => acquireLease(doc, lease, ctx())).catch(e => event(`lease renewal failed: ${(e as Error).message}`))
      },
      Math.max(1000, ttl / 3)
    )

    // Every live process the plan started on this machine, whatever its job's status: watched again.
    const adopt = (view: PlanView) => {
      for (const w of sup.adoptAll(recordedProcesses(view, host))) event(`${w.job} #${w.attempt}: adopted running process ${w.pid}`)
    }
    const first = await load()
    started = true
    adopt(first)
    if (first.git && first.status !== "completed" && first.status !== "failed" && first.status !== "canceled") {
      gitPlan = new GitPlan(store, planId, ctx, event, poke)
      await gitPlan.prepare(first)
    }
    watcher = store.docs.watch([planId], poke)
    if (opts.serve) {
      endpoint = await opts.serve(planId, poke).catch(e => {
        event(`could not serve the plan's local endpoint (reports go to the store directly): ${(e as Error).message}`)
        return undefined
      })
    }

    for (;;) {
      if (opts.signal?.aborted) {
        return { code: 130, why: "interrupted; job processes keep running detached and the next `concord run` adopts them", view: await load() }
      }
      const { alive, exits } = sup.poll()
      const view = await load()
      opts.onView?.(view)
      const unwatched = await settleUnwatched(view, alive, exits)
      if (unwatched.launching) adopt(view)
      const decision = decide(view, { now: Date.now(), alive, exits, lost: unwatched.lost, launchFailed: launchFailed.splice(0) })
      for (const a of decision.actions) if (a.kind === "stop") sup.stop(a.job, a.attempt, a.reason)
      const docActions = [...observedRecords(view, sup.watched()), ...decision.actions.filter(a => a.kind !== "stop")]
      let wrote = false
      let launches: Extract<Action, { kind: "launch" }>[] = []
      // A git plan ends with its pull request (opened, or its exact command recorded and printed).
      const completing = gitPlan !== null && docActions.some(a => a.kind === "setPlan" && a.to === "completed")
      if (completing) await gitPlan!.finish(await load())
      if (docActions.length > 0) {
        // One load, every action of the round, one save.
        const { result } = await store.updatePlan(planId, doc => {
          const r = applyActions(doc, docActions, { ...ctx(), host, logOf: (job, n) => logPath(planId, job, n) })
          return { doc: r.doc, result: r }
        })
        for (const line of result!.events) event(line)
        wrote = result!.applied.length > 0
        launches = result!.applied.filter(a => a.kind === "launch")
      }
      for (const a of launches) await launch(a.job, a.attempt, view)
      // Worktrees go when the plan completed; a failed or canceled plan keeps them (concord cleanup).
      if (completing && wrote && (await load()).status === "completed") event(`removed ${await gitPlan!.removeWorktrees()} worktrees`)
      if (gitPlan && (await gitPlan.step(view))) wrote = true
      const merging = gitPlan !== null && !["completed", "failed", "canceled"].includes(view.status) && (gitPlan.busy || queueBusy(view))
      if (decision.exit && (decision.exit.code !== 3 || !opts.wait) && !wrote && !merging) {
        return { code: decision.exit.code, why: decision.exit.why, view: await load() }
      }
      // A write changes the state the next decision reads: decide again at once.
      if (wrote || launchFailed.length > 0) continue
      const ac = new AbortController()
      wake = () => ac.abort()
      const onAbort = () => ac.abort()
      opts.signal?.addEventListener("abort", onAbort, { once: true })
      await sleep(unwatched.launching ? Math.min(tickMs, 100) : tickMs, ac.signal)
      opts.signal?.removeEventListener("abort", onAbort)
      wake = undefined
    }
  } catch (e) {
    // the plan gone from the store after the run started (its store deleted): say what became of the jobs
    if (started && (e instanceof NotFoundError || e instanceof StoreGoneError)) {
      throw new ConcordError(
        `plan ${planId} is gone from store ${store.dir} (deleted while concord run ran?); the job processes it started keep running`,
        1,
        "plan_gone"
      )
    }
    throw e
  } finally {
    // answers the reports under way (each durable first), then stops taking new ones
    await endpoint?.close().catch(e => event(`closing the local endpoint: ${(e as Error).message}`))
    await gitPlan?.idle()
    if (leaseTimer) clearInterval(leaseTimer)
    watcher?.close()
    sup.close()
    await store.updatePlan(planId, doc => releaseLease(doc, holder, ctx())).catch(() => {})
    await releaseLock()
  }

  /**
   * Jobs recorded running that no process group here is watched for: on this machine, what their
   * wrapper left says how they ended (or that they may still be starting); on another machine, a long
   * silence means lost.
   */
  async function settleUnwatched(view: PlanView, alive: ReadonlySet<string>, exits: ProcessExit[]): Promise<{ lost: Set<string>; launching: boolean }> {
    const lost = new Set<string>()
    let launching = false
    const now = Date.now()
    const remote: string[] = []
    const unstarted: { name: string; attempt: number }[] = []
    for (const j of view.jobs) {
      const k = key(j.name, j.attempt)
      if (j.status !== "running" || alive.has(k) || exits.some(e => key(e.job, e.attempt) === k)) continue
      if (j.current.host && j.current.host !== host) {
        remote.push(j.name)
        continue
      }
      const seen = sup.inspect(j.name, j.attempt)
      const fate = untrackedLiveness({ ...seen, startedAt: j.current.startedAt, now, launchWindowMs })
      if (fate.kind === "exited") exits.push({ job: j.name, attempt: j.attempt, ...fate.exit, at: now })
      else if (fate.kind === "launching") launching = true
      else if (fate.kind === "unstarted") unstarted.push({ name: j.name, attempt: j.attempt })
      else lost.add(k)
    }
    for (const u of unstarted) {
      event(`${u.name} #${u.attempt}: recorded running but never started (its orchestrator stopped in between): starting it now`)
      await launch(u.name, u.attempt, view)
    }
    if (remote.length > 0) {
      const reports = await store.loadReportDigests(planId, remote)
      for (const name of remote) {
        const j = getJob(view, name)
        const last = reports.get(name)?.byAttempt[String(j.attempt)]?.last
        if (remoteLost({ startedAt: j.current.startedAt, heartbeatAt: j.current.heartbeatAt, lastReportAt: last?.at ?? null, now, staleMs: view.staleMs })) {
          lost.add(key(name, j.attempt))
        }
      }
    }
    return { lost, launching }
  }

  /** Start the process of an attempt just recorded running; a failure to start is recorded next round. */
  async function launch(jobName: string, attempt: number, view: PlanView): Promise<void> {
    const job = getJob(view, jobName)
    const fail = (reason: string) => {
      launchFailed.push({ job: jobName, attempt, reason })
      event(`${jobName} #${attempt}: could not start: ${reason}`)
    }
    let cwd = resolveJobCwd({ baseDir: view.baseDir, cwd: job.cwd, runDir }, isDir)
    let gitEnv: Record<string, string> = {}
    if (gitPlan) {
      // The attempt's own worktree and branch, recorded in the attempt before its process starts.
      try {
        const p = await gitPlan.prepareAttempt(view, jobName, attempt)
        await store.updatePlan(planId, doc =>
          updateAttempt(doc, jobName, attempt, p.fields, ctx(), `job ${jobName} #${attempt}: worktree ${p.fields.worktree} on ${p.fields.branch}`)
        )
        cwd = isDir(p.cwd) ? { dir: p.cwd } : { error: `working directory ${p.cwd} does not exist in the job's worktree` }
        gitEnv = p.env
      } catch (e) {
        const out = (e as { output?: string }).output
        return fail(`${(e as Error).message}${out ? `: ${out}` : ""}`)
      }
    }
    if ("error" in cwd) return fail(cwd.error)
    // Ready MCP client configs for this attempt, so an agent CLI reaches `concord mcp` as this job.
    const mcpEnv = await writeMcpConfigs({ storeDir: store.dir, planId, job: jobName, attempt }, opts.binDir).catch(e => {
      event(`${jobName} #${attempt}: could not write its MCP configs: ${(e as Error).message}`)
      return {} as Record<string, string>
    })
    const env = jobEnv({
      base: process.env,
      env: { ...mcpEnv, ...job.env, ...gitEnv },
      binDir: opts.binDir,
      prompt: job.prompt,
      vars: { CONCORD_STORE: store.dir, CONCORD_PLAN: planId, CONCORD_JOB: jobName, CONCORD_ATTEMPT: String(attempt) },
    })
    const r = await sup.spawn({ job: jobName, attempt, run: job.run, cwd: cwd.dir, env, prompt: job.prompt ?? "" })
    if (!r.ok) return fail(r.reason)
    event(`${jobName} #${attempt}: started (pid ${r.pid}, log ${logPath(planId, jobName, attempt)})`)
  }
}

function isDir(dir: string): boolean {
  try {
    return existsSync(dir) && statSync(dir).isDirectory()
  } catch {
    return false
  }
}
