/**
 * The runner: the imperative shell around the scheduler. It holds the plan's lock and lease, launches
 * job processes, watches them, and applies the scheduler's actions to the plan document. All state that
 * matters lives in the document: a runner killed with SIGKILL loses nothing, and the next one reconciles
 * (adopts live job processes, fails lost ones, keeps completions that arrived meanwhile).
 *
 * Job processes are started detached, as leaders of their own process group, with stdout and stderr
 * going straight to a log file in the store: they survive the runner and can be adopted by the next.
 */
import { spawn } from "node:child_process"
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { actorLabel, type WriteContext } from "../doc/actor.js"
import { InvalidTransitionError } from "../doc/errors.js"
import {
  acquireLease,
  clearCheckpoint,
  getJob,
  type PlanView,
  raiseCheckpoint,
  readPlan,
  releaseLease,
  setJobStatus,
  setPlanStatus,
  updateAttempt,
} from "../doc/plan.js"
import { writeMcpConfigs } from "../mcp/config.js"
import type { PlanStore } from "../sync/store/PlanStore.js"
import { acquirePlanLock } from "./lock.js"
import { isSameProcessAlive, processStartTime, signalJob } from "./proc.js"
import { type Action, decide, key, type ProcessExit } from "./scheduler.js"

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
  signal?: AbortSignal
}

export interface RunResult {
  code: 0 | 1 | 3
  why: string
  view: PlanView
}

interface Proc {
  job: string
  attempt: number
  pid: number
  adopted: boolean
  logFile: string | null
  lastOutput: number
  killTimer?: NodeJS.Timeout
  stopping?: string
}

export async function runPlan(store: PlanStore, planId: string, opts: RunOptions = {}): Promise<RunResult> {
  const host = os.hostname().split(".")[0] || "localhost"
  const holder = actorLabel("orchestrator", host, process.pid)
  const ctx = (): WriteContext => ({ by: holder, now: Date.now() })
  const event = opts.onEvent ?? (() => {})
  const ttl = opts.leaseTtlMs ?? 60_000
  const tickMs = opts.tickMs ?? 500
  const killGraceMs = opts.killGraceMs ?? 5_000

  const releaseLock = await acquirePlanLock(store.dir, planId, { holder, host, pid: process.pid, startedAt: Date.now() })
  const procs = new Map<string, Proc>()
  const exits: ProcessExit[] = []
  let wake: (() => void) | undefined
  const poke = () => wake?.()
  let watcher: { close(): void } | undefined
  let leaseTimer: NodeJS.Timeout | undefined

  try {
    // The document half of "only one orchestrator": a lease with holder and expiry.
    await store.updatePlan(planId, doc => {
      const cur = readPlan(doc).lease
      const holderGone = !!cur && cur.holder !== holder && cur.host === host && cur.expiresAt > Date.now() && !isSameProcessAlive(cur.pid, null)
      return acquireLease(doc, { holder, host, pid: process.pid, ttlMs: ttl }, ctx(), holderGone)
    })
    leaseTimer = setInterval(() => {
      store.updatePlan(planId, doc => acquireLease(doc, { holder, host, pid: process.pid, ttlMs: ttl }, ctx())).catch(e => event(`lease renewal failed: ${(e as Error).message}`))
    }, Math.max(1000, ttl / 3))

    // Reconcile with what the document says is running on this machine.
    const lost = new Set<string>()
    for (const j of readPlan(await store.loadPlan(planId)).jobs) {
      if (j.status !== "running") continue
      const a = j.current
      if (a.host && a.host !== host) continue // another machine's job: its own runner watches it
      const logFile = a.log ? path.join(store.dir, a.log) : null
      if (a.pid !== null && isSameProcessAlive(a.pid, a.pidStartedAt)) {
        procs.set(key(j.name, a.n), { job: j.name, attempt: a.n, pid: a.pid, adopted: true, logFile, lastOutput: Date.now() })
        event(`${j.name} #${a.n}: adopted running process ${a.pid}`)
      } else {
        // Gone while nobody watched: its wrapper may have left the exit code; else it is lost.
        const ended = logFile ? readExitFile(logFile) : undefined
        if (ended) exits.push({ job: j.name, attempt: a.n, ...ended, at: Date.now() })
        else lost.add(key(j.name, a.n))
      }
    }

    watcher = store.docs.watch([planId], () => poke())

    for (;;) {
      if (opts.signal?.aborted) {
        const view = readPlan(await store.loadPlan(planId))
        return { code: 3, why: "interrupted; job processes keep running and the next `concord run` adopts them", view }
      }
      pollAdopted(procs, exits)
      const view = readPlan(await store.loadPlan(planId))
      await checkRemoteJobs(view, lost)
      opts.onView?.(view)
      const drained = exits.splice(0)
      const decision = decide(view, { now: Date.now(), alive: new Set(procs.keys()), exits: drained, lost })
      let wrote = false
      for (const a of decision.actions) if (await apply(a, view)) wrote = true
      for (const e of drained) procs.delete(key(e.job, e.attempt))
      for (const k of lost) if (decision.actions.some(a => a.kind === "setJob" && key(a.job, a.attempt) === k)) lost.delete(k)
      await heartbeat(view)
      if (decision.exit && (decision.exit.code !== 3 || !opts.wait) && !wrote) {
        return { code: decision.exit.code, why: decision.exit.why, view: readPlan(await store.loadPlan(planId)) }
      }
      // A write changes the state the next decision reads: decide again at once.
      if (wrote) continue
      await new Promise<void>(resolve => {
        const done = () => {
          clearTimeout(t)
          opts.signal?.removeEventListener("abort", done)
          resolve()
        }
        const t = setTimeout(done, tickMs)
        opts.signal?.addEventListener("abort", done, { once: true })
        wake = done
      })
      wake = undefined
    }
  } finally {
    if (leaseTimer) clearInterval(leaseTimer)
    watcher?.close()
    for (const p of procs.values()) if (p.killTimer) clearTimeout(p.killTimer)
    await store.updatePlan(planId, doc => releaseLease(doc, holder, ctx())).catch(() => {})
    await releaseLock()
  }

  /** Apply one action. Returns whether the plan document was written. */
  async function apply(a: Action, view: PlanView): Promise<boolean> {
    try {
      switch (a.kind) {
        case "launch":
          await launch(a.job, a.attempt, view)
          return true
        case "setJob": {
          await store.updatePlan(planId, doc => setJobStatus(doc, a.job, a.to, { attempt: a.attempt, ...a.fields }, ctx()))
          const detail = a.fields.reason ?? a.fields.note ?? ""
          event(`${a.job} #${a.attempt}: ${a.to}${detail ? ` (${detail})` : ""}`)
          return true
        }
        case "record":
          await store.updatePlan(planId, doc => updateAttempt(doc, a.job, a.attempt, a.fields, ctx()))
          return true
        case "stop":
          stop(a.job, a.attempt, a.reason)
          return false
        case "raise": {
          await store.updatePlan(planId, doc => raiseCheckpoint(doc, a.checkpoint, a.context, ctx(), a.cause))
          const c = a.context
          event(`plan paused at ${a.checkpoint}${c.jobName ? `: job ${c.jobName}` : ""}${c.message ? ` (${c.message})` : c.reason ? ` (${c.reason})` : ""}`)
          return true
        }
        case "clear":
          await store.updatePlan(planId, doc => clearCheckpoint(doc, ctx(), `approved by ${a.approvedBy}`))
          event(`checkpoint ${a.checkpoint} approved by ${a.approvedBy}; resuming`)
          return true
        case "setPlan":
          await store.updatePlan(planId, doc => setPlanStatus(doc, a.to, ctx(), { reason: a.reason, ...(a.to === "completed" ? { completedAt: Date.now() } : {}) }))
          event(`plan ${a.to} (${a.reason})`)
          return true
      }
    } catch (e) {
      // Another process changed the plan meanwhile: the next round decides again from the new state.
      if (e instanceof InvalidTransitionError) {
        event(`skipped ${a.kind} ${"job" in a ? a.job : ""}: ${e.message}`)
        return false
      }
      throw e
    }
  }

  async function launch(jobName: string, attempt: number, view: PlanView): Promise<void> {
    const job = getJob(view, jobName)
    const cwd = path.resolve(view.baseDir, job.cwd ?? ".")
    const logRel = path.join("logs", planId, `${jobName}.${attempt}.log`)
    const logFile = path.join(store.dir, logRel)
    const startedAt = Date.now()
    if (!existsSync(cwd)) {
      await store.updatePlan(planId, doc =>
        setJobStatus(doc, jobName, "failed", { attempt, reason: `working directory ${cwd} does not exist`, failureKind: "launch_failed", endedAt: startedAt }, ctx())
      )
      return event(`${jobName} #${attempt}: failed to start (no directory ${cwd})`)
    }
    // Durable before the process exists: the job's own reports always find it running.
    await store.updatePlan(planId, doc => setJobStatus(doc, jobName, "running", { attempt, host, startedAt, log: logRel }, ctx()))
    mkdirSync(path.dirname(logFile), { recursive: true })
    const fd = openSync(logFile, "a")
    const binPath = opts.binDir ? `${opts.binDir}${path.delimiter}` : ""
    const exitFile = logFile.replace(/\.log$/, ".exit")
    const mcpEnv = await writeMcpConfigs({ storeDir: store.dir, planId, job: jobName, attempt }, opts.binDir).catch(e => {
      event(`${jobName} #${attempt}: no MCP config written (${(e as Error).message})`)
      return {}
    })
    // A small wrapper records the exit code in a file, so a runner that adopts the process after a
    // restart (and so is not its parent) still learns how it ended.
    const child = spawn("/bin/sh", ["-c", EXIT_WRAPPER], {
      cwd,
      detached: true,
      stdio: ["ignore", fd, fd],
      env: {
        ...process.env,
        ...job.env,
        PATH: `${binPath}${process.env.PATH ?? ""}`,
        CONCORD_STORE: store.dir,
        CONCORD_PLAN: planId,
        CONCORD_JOB: jobName,
        CONCORD_ATTEMPT: String(attempt),
        CONCORD_PROMPT: job.prompt ?? "",
        CONCORD_RUN: job.run,
        CONCORD_EXIT_FILE: exitFile,
        ...mcpEnv,
      },
    })
    closeSync(fd)
    const pid = child.pid
    if (pid === undefined) {
      await new Promise(r => child.once("error", r))
      await store.updatePlan(planId, doc => setJobStatus(doc, jobName, "failed", { attempt, reason: "could not start the process", failureKind: "launch_failed", endedAt: Date.now() }, ctx()))
      return
    }
    const k = key(jobName, attempt)
    procs.set(k, { job: jobName, attempt, pid, adopted: false, logFile, lastOutput: startedAt })
    child.on("exit", (code, signal) => {
      const p = procs.get(k)
      exits.push({ job: jobName, attempt, code, signal, at: Date.now(), ...(p?.stopping ? { stoppedFor: p.stopping } : {}) })
      if (p?.killTimer) clearTimeout(p.killTimer)
      poke()
    })
    child.unref()
    const pidStartedAt = processStartTime(pid)
    await store.updatePlan(planId, doc => updateAttempt(doc, jobName, attempt, { pid, ...(pidStartedAt ? { pidStartedAt } : {}) }, ctx(), `job ${jobName} #${attempt}: started pid ${pid}`))
    event(`${jobName} #${attempt}: started (pid ${pid}, log ${logFile})`)
  }

  function stop(jobName: string, attempt: number, reason: string): void {
    const p = procs.get(key(jobName, attempt))
    if (!p || p.stopping) return
    p.stopping = reason
    event(`${jobName} #${attempt}: stopping process ${p.pid} (${reason})`)
    signalJob(p.pid, "SIGTERM")
    p.killTimer = setTimeout(() => signalJob(p.pid, "SIGKILL"), killGraceMs)
    p.killTimer.unref()
  }

  /**
   * Jobs recorded running on another machine (launched by an orchestrator there that has since lost the
   * lease) cannot be checked by pid: they count as lost once they showed no sign of life (start,
   * heartbeat, report) for twice the plan's staleMs.
   */
  async function checkRemoteJobs(view: PlanView, lostSet: Set<string>): Promise<void> {
    const remote = view.jobs.filter(j => j.status === "running" && j.current.host && j.current.host !== host && !procs.has(key(j.name, j.attempt)))
    if (remote.length === 0) return
    const reports = await store.loadReportDigests(planId, remote.map(j => j.name))
    for (const j of remote) {
      const last = reports.get(j.name)?.byAttempt[String(j.attempt)]?.last
      const sign = Math.max(j.current.startedAt ?? 0, j.current.heartbeatAt ?? 0, last?.at ?? 0)
      if (Date.now() - sign > 2 * view.staleMs) lostSet.add(key(j.name, j.attempt))
    }
  }

  /** Output counts as a sign of life: record it (throttled) so `status` can flag stale jobs. */
  async function heartbeat(view: PlanView): Promise<void> {
    const every = Math.max(5_000, Math.floor(view.staleMs / 4))
    for (const p of procs.values()) {
      if (!p.logFile) continue
      let mtime: number
      try {
        mtime = statSync(p.logFile).mtimeMs
      } catch {
        continue
      }
      if (mtime - p.lastOutput < every) continue
      p.lastOutput = mtime
      await store
        .updatePlan(planId, doc => updateAttempt(doc, p.job, p.attempt, { heartbeatAt: Math.round(mtime) }, ctx(), `job ${p.job} #${p.attempt}: output seen`))
        .catch(() => {})
    }
  }
}

const EXIT_WRAPPER = `/bin/sh -c "$CONCORD_RUN"; code=$?; printf '%s' "$code" > "$CONCORD_EXIT_FILE"; exit $code`

/**
 * Adopted processes are not our children: notice their end by polling, and read the exit code the
 * wrapper left (unknown if the wrapper itself was killed).
 */
function pollAdopted(procs: Map<string, Proc>, exits: ProcessExit[]): void {
  for (const p of procs.values()) {
    if (!p.adopted || exits.some(e => e.job === p.job && e.attempt === p.attempt)) continue
    if (isSameProcessAlive(p.pid, null)) continue
    const ended = (p.logFile ? readExitFile(p.logFile) : undefined) ?? { code: null, signal: null }
    exits.push({ job: p.job, attempt: p.attempt, ...ended, at: Date.now(), ...(p.stopping ? { stoppedFor: p.stopping } : {}) })
  }
}

/** The exit the wrapper recorded next to a job's log, if it finished. */
function readExitFile(logFile: string): { code: number | null; signal: string | null } | undefined {
  let n: number
  try {
    n = Number(readFileSync(logFile.replace(/\.log$/, ".exit"), "utf8").trim())
  } catch {
    return undefined
  }
  if (!Number.isInteger(n)) return undefined
  // Shells report death by signal N as 128+N.
  if (n > 128 && n < 160) return { code: null, signal: osConstantsSignalName(n - 128) }
  return { code: n, signal: null }
}

function osConstantsSignalName(n: number): string {
  const entry = Object.entries(os.constants.signals).find(([, v]) => v === n)
  return entry ? entry[0] : `signal ${n}`
}
