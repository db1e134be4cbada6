/**
 * The orchestrator's pure policy beside `decide()` (scheduler.ts): every rule the runner follows that
 * can be stated without a process, a clock or a file. The runner (runner.ts) gathers facts through the
 * job supervisor (supervisor.ts) and the store, and asks these functions what they mean.
 *
 * - applyAction / applyActions: how a scheduler action changes the plan document (the only copy; the
 *   runner and the tests both use it). A round's actions are applied to one document, saved once.
 * - leaseDecision: when another orchestrator's lease may be taken over.
 * - judgeLock: what an existing lock file means (held, stale, damaged).
 * - untrackedLiveness / remoteLost: what became of a job recorded running that no supervisor here watches.
 * - stopStep: the stop escalation (SIGTERM, then SIGKILL to the whole group until it is gone).
 * - resolveJobCwd, jobEnv: where and with what environment a job runs.
 * - parseExitFile, parsePidFile: what the job wrapper left behind, never guessing an unknown exit.
 */
import path from "node:path"
import type { WriteContext } from "../doc/actor.js"
import { InvalidTransitionError } from "../doc/errors.js"
import type { LeaseRecord } from "../doc/model.js"
import { clearCheckpoint, type PlanDocument, type PlanView, raiseCheckpoint, setJobStatus, setPlanStatus, updateAttempt } from "../doc/plan.js"
import type { Action } from "./scheduler.js"

/* ----------------------------------------------------------------- actions */

export interface ApplyContext extends WriteContext {
  /** This machine, recorded on every attempt this runner launches. */
  host: string
  /** Log path (relative to the store) of a job attempt. */
  logOf(job: string, attempt: number): string
}

export interface Applied {
  doc: PlanDocument
  /** One human line for the event log, when the action is worth one. */
  event?: string
  /** Set when the action no longer applied (another process changed the plan): nothing was written. */
  skipped?: string
}

/**
 * Apply one scheduler action to a plan document. `launch` records the attempt as running (host, start
 * time, log) before any process exists, so the job's own reports always find it running; `stop` is not
 * a document change (the supervisor does it) and returns the document unchanged.
 */
export function applyAction(doc: PlanDocument, a: Action, ctx: ApplyContext): Applied {
  try {
    switch (a.kind) {
      case "launch":
        return { doc: setJobStatus(doc, a.job, "running", { attempt: a.attempt, host: ctx.host, startedAt: ctx.now, log: ctx.logOf(a.job, a.attempt) }, ctx) }
      case "setJob": {
        const detail = a.fields.reason ?? a.fields.note ?? ""
        return {
          doc: setJobStatus(doc, a.job, a.to, { attempt: a.attempt, ...a.fields }, ctx),
          event: `${a.job} #${a.attempt}: ${a.to}${detail ? ` (${detail})` : ""}`,
        }
      }
      case "record":
        return { doc: updateAttempt(doc, a.job, a.attempt, a.fields, ctx, a.did) }
      case "stop":
        return { doc }
      case "raise": {
        const c = a.context
        const why = c.message ? ` (${c.message})` : c.reason ? ` (${c.reason})` : ""
        return {
          doc: raiseCheckpoint(doc, a.checkpoint, a.context, ctx, a.cause),
          event: `plan paused at ${a.checkpoint}${c.jobName ? `: job ${c.jobName}` : ""}${why}`,
        }
      }
      case "clear":
        return {
          doc: clearCheckpoint(doc, ctx, a.why ?? `approved by ${a.approvedBy}`),
          event: a.why ? `checkpoint ${a.checkpoint} cleared: ${a.why}; resuming` : `checkpoint ${a.checkpoint} approved by ${a.approvedBy}; resuming`,
        }
      case "setPlan":
        return {
          doc: setPlanStatus(doc, a.to, ctx, { reason: a.reason, ...(a.to === "completed" ? { completedAt: ctx.now } : {}) }),
          event: `plan ${a.to} (${a.reason})`,
        }
    }
  } catch (e) {
    // Another process changed the plan meanwhile: the next round decides again from the new state.
    if (e instanceof InvalidTransitionError) return { doc, skipped: `skipped ${a.kind}${"job" in a ? ` ${a.job}` : ""}: ${e.message}` }
    throw e
  }
}

/** Apply a round's actions, in order, to one document. Returns the new document and what happened. */
export function applyActions(doc: PlanDocument, actions: readonly Action[], ctx: ApplyContext): { doc: PlanDocument; events: string[]; applied: Action[] } {
  const events: string[] = []
  const applied: Action[] = []
  for (const a of actions) {
    const r = applyAction(doc, a, ctx)
    if (r.skipped) events.push(r.skipped)
    else {
      if (r.doc !== doc || a.kind === "stop") applied.push(a)
      if (r.event) events.push(r.event)
    }
    doc = r.doc
  }
  return { doc, events, applied }
}

/* ------------------------------------------------------------------- lease */

export type LeaseDecision = { take: true; takeOver: boolean } | { take: false; why: string }

/**
 * May `me` take the plan's lease? Free, expired or own leases: yes. An unexpired lease of another
 * holder on this machine whose process is gone: yes (taken over at once). Anything else: no.
 */
export function leaseDecision(
  cur: LeaseRecord | null,
  me: { holder: string; host: string },
  now: number,
  localPidAlive: (pid: number) => boolean
): LeaseDecision {
  if (!cur || cur.holder === me.holder || cur.expiresAt <= now) return { take: true, takeOver: false }
  if (cur.host === me.host && !localPidAlive(cur.pid)) return { take: true, takeOver: true }
  const inS = Math.max(0, Math.round((cur.expiresAt - now) / 1000))
  return { take: false, why: `plan is already run by ${cur.holder} (its lease expires in ${inS} s); refusing to start a second orchestrator` }
}

/** Who holds the lease right now, if anyone alive might: for refusing to take over a damaged lock. */
export function liveLeaseHolder(cur: LeaseRecord | null, host: string, now: number, localPidAlive: (pid: number) => boolean): string | null {
  if (!cur || cur.expiresAt <= now) return null
  if (cur.host === host && !localPidAlive(cur.pid)) return null
  return `${cur.holder} (lease until ${new Date(cur.expiresAt).toISOString()})`
}

/* -------------------------------------------------------------------- lock */

export interface LockInfo {
  holder: string
  host: string
  pid: number
  startedAt: number
}

/** Parse a lock file's content; undefined when it is empty, torn or not a lock (a full disk leaves those). */
export function parseLock(text: string): LockInfo | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockInfo>
    if (v && typeof v.holder === "string" && typeof v.host === "string" && Number.isInteger(v.pid) && typeof v.startedAt === "number") return v as LockInfo
  } catch {
    // fall through
  }
  return undefined
}

/**
 * What an existing lock file means. `held`: refuse. `stale`: its holder process is gone, take it over.
 * `damaged`: unreadable; take it over only after checking no live orchestrator holds the plan's lease.
 */
export function judgeLock(cur: LockInfo | undefined, myHost: string, localPidAlive: (pid: number) => boolean): "held" | "stale" | "damaged" {
  if (!cur) return "damaged"
  if (cur.host !== myHost) return "held"
  return localPidAlive(cur.pid) ? "held" : "stale"
}

/* --------------------------------------------------------------- liveness */

/** How a job process ended, as far as anyone can tell. code and signal both null: unknown. */
export interface ExitInfo {
  code: number | null
  signal: string | null
  /** Why the exit code is unknown, when it is. */
  unknown?: string
}

/**
 * The exit file a job wrapper writes (`<code>\n`, atomically by rename). Anything else (empty, torn,
 * garbage: a full disk) is an unknown exit, never success.
 */
export function parseExitFile(text: string, signalName: (n: number) => string): ExitInfo {
  const m = /^(\d{1,3})\n$/.exec(text)
  if (!m) return { code: null, signal: null, unknown: "its exit file is empty or damaged (exit code unknown)" }
  const n = Number(m[1])
  // Shells report death by signal N as 128+N.
  if (n > 128 && n < 160) return { code: null, signal: signalName(n - 128) }
  return { code: n, signal: null }
}

/** The pid file a job wrapper writes before it runs the command: `<pid> <start ticks>\n`. */
export function parsePidFile(text: string): { pid: number; startTicks: number | null } | undefined {
  const m = /^(\d+) (\d*)\n$/.exec(text)
  if (!m) return undefined
  return { pid: Number(m[1]), startTicks: m[2] ? Number(m[2]) : null }
}

export type UntrackedFate = { kind: "exited"; exit: ExitInfo } | { kind: "launching" } | { kind: "unstarted" } | { kind: "lost" }

/**
 * A job attempt recorded running on this machine that no supervisor here watches (no live process
 * group found for it), looked at by the orchestrator holding the plan's lock (so the one that recorded
 * it is gone). Its wrapper's exit file says how it ended. The wrapper writes its pid file before it runs
 * the job's command, so with neither file the command never ran:
 *  - no log file either (it is opened before the wrapper is spawned): the previous orchestrator was
 *    killed before it started the process; it is started now, as the same attempt;
 *  - a log file: the wrapper may still be starting, so the attempt is looked at again until
 *    `launchWindowMs` after it was recorded; if no pid file came by then, the spawn never happened (an
 *    orchestrator SIGKILLed inside fork() takes the child with it) and it is started now, as the same
 *    attempt.
 * A pid file whose process group is gone without an exit file is lost: the command may have run.
 */
export function untrackedLiveness(f: {
  exit: ExitInfo | undefined
  pidFile: boolean
  /** whether the attempt's log file exists (default: assumed to, which never starts anything) */
  logFile?: boolean
  startedAt: number | null
  now: number
  launchWindowMs: number
}): UntrackedFate {
  if (f.exit) return { kind: "exited", exit: f.exit }
  if (f.pidFile) return { kind: "lost" }
  if (f.logFile === false) return { kind: "unstarted" }
  if (f.startedAt !== null && f.now - f.startedAt < f.launchWindowMs) return { kind: "launching" }
  return f.logFile === true ? { kind: "unstarted" } : { kind: "lost" }
}

/**
 * A job recorded running on another machine (launched by an orchestrator there that has since lost
 * the lease) cannot be checked by pid: it counts as lost once it showed no sign of life (start,
 * heartbeat, report) for twice the plan's staleMs.
 */
export function remoteLost(f: { startedAt: number | null; heartbeatAt: number | null; lastReportAt: number | null; now: number; staleMs: number }): boolean {
  const sign = Math.max(f.startedAt ?? 0, f.heartbeatAt ?? 0, f.lastReportAt ?? 0)
  return f.now - sign > 2 * f.staleMs
}

/* -------------------------------------------------------------------- stop */

export interface StopState {
  termAt: number | null
  killAt: number | null
}

/**
 * One step of stopping a job's process group: SIGTERM first; SIGKILL once `graceMs` passed since;
 * SIGKILL again every `rekillMs` while any member lives (a member may have forked meanwhile). Done
 * only when the whole group is gone, whatever its leader did.
 */
export function stopStep(s: StopState, groupAlive: boolean, now: number, graceMs: number, rekillMs = 1000): "SIGTERM" | "SIGKILL" | "wait" | "done" {
  if (!groupAlive) return "done"
  if (s.termAt === null) return "SIGTERM"
  if (now - s.termAt < graceMs) return "wait"
  if (s.killAt === null || now - s.killAt >= rekillMs) return "SIGKILL"
  return "wait"
}

/* ----------------------------------------------------------- cwd and env */

/**
 * Where a job runs. An absolute `cwd` is used as is. A relative one (or none) resolves against the
 * plan's base dir (the plan file's directory where it was created) when that directory exists on this
 * machine, else against the directory `concord run` was started in: a plan created on another machine
 * runs relative to where it is run. A directory that does not exist is a launch failure.
 */
export function resolveJobCwd(
  f: { baseDir: string; cwd: string | null; runDir: string },
  exists: (dir: string) => boolean
): { dir: string } | { error: string } {
  const rel = f.cwd ?? "."
  let dir: string
  if (path.isAbsolute(rel)) dir = rel
  else dir = path.resolve(exists(f.baseDir) ? f.baseDir : f.runDir, rel)
  if (!exists(dir)) {
    const from = path.isAbsolute(rel)
      ? ""
      : exists(f.baseDir)
        ? ` (cwd "${rel}" relative to the plan's directory)`
        : ` (cwd "${rel}" relative to the directory concord run was started in; the plan's directory ${f.baseDir} does not exist here)`
    return { error: `working directory ${dir} does not exist${from}` }
  }
  return { dir }
}

/** Prompts up to this many bytes are also passed in $CONCORD_PROMPT; every prompt is in $CONCORD_PROMPT_FILE. */
export const PROMPT_ENV_MAX = 32 * 1024

/**
 * A job's environment: the runner's, then the job's own `env`, then concord's variables. PATH is the
 * job's own PATH (or the runner's) with concord's bin dir in front, so `concord report` works inside.
 */
export function jobEnv(f: {
  base: NodeJS.ProcessEnv
  env: Record<string, string>
  binDir?: string
  vars: Record<string, string>
  prompt: string | null
}): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(f.base)) if (v !== undefined) out[k] = v
  delete out.CONCORD_PROMPT
  Object.assign(out, f.env)
  const pathVar = f.env.PATH ?? f.base.PATH ?? ""
  out.PATH = f.binDir ? (pathVar ? `${f.binDir}${path.delimiter}${pathVar}` : f.binDir) : pathVar
  Object.assign(out, f.vars)
  const prompt = f.prompt ?? ""
  if (Buffer.byteLength(prompt) <= PROMPT_ENV_MAX) out.CONCORD_PROMPT = prompt
  return out
}

/* ------------------------------------------------------- what to record */

/** Processes the document says run on this machine (any attempt with a pid), for adoption. */
export function recordedProcesses(view: PlanView, host: string): { job: string; attempt: number; pid: number; startedAtMs: number | null }[] {
  const out: { job: string; attempt: number; pid: number; startedAtMs: number | null }[] = []
  for (const j of view.jobs) {
    for (const a of j.attempts) {
      if (a.pid !== null && (a.host ?? host) === host) out.push({ job: j.name, attempt: a.n, pid: a.pid, startedAtMs: a.pidStartedAt })
    }
  }
  return out
}

/**
 * Facts the runner observed that the document should hold, as `record` actions: the pid of every
 * watched process the document does not name yet (a runner killed right after spawning never wrote
 * it), and a heartbeat when a job's log grew (throttled to one per `every` ms) so `status` can flag
 * stale jobs.
 */
export function observedRecords(
  view: PlanView,
  watched: readonly { job: string; attempt: number; pid: number; startedAtMs: number | null; lastOutput: number | undefined }[]
): Action[] {
  const out: Action[] = []
  const every = Math.max(5_000, Math.floor(view.staleMs / 4))
  for (const w of watched) {
    const a = view.jobs.find(j => j.name === w.job)?.attempts.find(x => x.n === w.attempt)
    if (!a) continue
    if (a.pid !== w.pid) {
      const fields = { pid: w.pid, ...(w.startedAtMs !== null ? { pidStartedAt: w.startedAtMs } : {}) }
      out.push({ kind: "record", job: w.job, attempt: w.attempt, fields, did: `job ${w.job} #${w.attempt}: started pid ${w.pid}` })
    }
    if (a.status === "running" && w.lastOutput !== undefined) {
      const seen = Math.max(a.heartbeatAt ?? 0, a.startedAt ?? 0)
      if (w.lastOutput - seen >= every) {
        const at = Math.round(w.lastOutput)
        out.push({ kind: "record", job: w.job, attempt: w.attempt, fields: { heartbeatAt: at }, did: `job ${w.job} #${w.attempt}: output seen` })
      }
    }
  }
  return out
}
