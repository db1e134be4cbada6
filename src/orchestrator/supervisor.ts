/**
 * The job supervisor: the only part of the orchestrator that touches job processes. `JobSupervisor`
 * is the interface the runner uses (a fake stands in for it in unit tests); `ProcessSupervisor` is the
 * real one, and `stopJobProcess` is the one stop routine shared by the runner and `concord cancel`.
 *
 * Every job attempt runs under a small /bin/sh wrapper, started detached as the leader of its own
 * process group, with stdout and stderr going straight to `<store>/logs/<plan>/<job>.<attempt>.log`.
 * Before it runs the job's command the wrapper writes `<job>.<attempt>.pid` (its pid and exact start
 * time; if it cannot, it exits 125 without running the command, so no pid file means the command never
 * ran), and after the command ends it writes `<job>.<attempt>.exit` (`<code>\n`); both by rename, so
 * they are whole or absent. The pid files are how a restarted runner finds every live process the plan
 * started (also those of completed jobs idling in their grace period, and those of a runner killed
 * between recording an attempt and recording its pid); the exit file is how it learns how a process it
 * did not start ended. An exit file that is empty or damaged is an unknown exit, never success.
 *
 * Invariants: a process group counts as alive while any non-zombie member lives, whatever its leader
 * did; stopping sends SIGTERM to the whole group, then SIGKILL after a grace, again until the group is
 * gone; a group is only signaled after checking it is the one the plan started (pid start time).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { sleep } from "../lib/async.js"
import { ensureDirInSync } from "../sync/storage/atomic.js"
import { hostName } from "../lib/host.js"
import { type ExitInfo, parseExitFile, parsePidFile, stopStep, type StopState } from "./policy.js"
import { bootTime, processGroupMembers, processInfo, processStartTicks, ticksToMs } from "./proc.js"
import { key, type ProcessExit } from "./scheduler.js"

/** Log path of a job attempt, relative to the store. */
export function logPath(planId: string, job: string, attempt: number): string {
  return path.join("logs", planId, `${job}.${attempt}.log`)
}

/** The files of a job attempt next to its log: the wrapper's pid and exit files, and the prompt. */
export function jobFiles(storeDir: string, planId: string, job: string, attempt: number) {
  const log = path.join(storeDir, logPath(planId, job, attempt))
  const stem = log.replace(/\.log$/, "")
  return { log, pid: `${stem}.pid`, exit: `${stem}.exit`, prompt: `${stem}.prompt` }
}

export interface LaunchSpec {
  job: string
  attempt: number
  /** The job's shell command. */
  run: string
  cwd: string
  /** The job's full environment (see policy.jobEnv); the supervisor adds $CONCORD_PROMPT_FILE. */
  env: Record<string, string>
  prompt: string
}

export type LaunchResult = { ok: true; pid: number; startTicks: number | null } | { ok: false; reason: string }

/** A process the document says an attempt runs (for attempts started before pid files existed). */
export interface RecordedProcess {
  job: string
  attempt: number
  pid: number
  /** Start time recorded in the document (ms), if any. */
  startedAtMs: number | null
}

export interface WatchedProcess {
  job: string
  attempt: number
  pid: number
  /** Start time of the leader in ms since the epoch, when known. */
  startedAtMs: number | null
  adopted: boolean
}

export interface JobSupervisor {
  /** Start an attempt's process. Resolves with its pid, or with why it could not start (never throws for that). */
  spawn(spec: LaunchSpec): Promise<LaunchResult>
  /**
   * Find and start watching every live process group of the plan's jobs: by the pid files their
   * wrappers wrote, and by the pids recorded in the document. Returns the ones newly watched.
   */
  adoptAll(recorded: readonly RecordedProcess[]): WatchedProcess[]
  /** Leaders that ended since the last poll, and the watched attempts whose group still lives ("job#n"). */
  poll(): { alive: Set<string>; exits: ProcessExit[] }
  /** Start stopping an attempt's process group (idempotent). Returns false if it is not watched. */
  stop(job: string, attempt: number, reason: string): boolean
  /**
   * What an attempt nobody here watches left behind: its exit (if it wrote one), whether it wrote its
   * pid, and whether its log file exists (opened before its wrapper is spawned: without it, it never ran).
   */
  inspect(job: string, attempt: number): { exit: ExitInfo | undefined; pidFile: boolean; logFile: boolean }
  /** The processes watched now, with the time of their latest output (log file change), in ms. */
  watched(): (WatchedProcess & { lastOutput: number | undefined })[]
  /** Stop watching (timers, listeners). Job processes keep running. */
  close(): void
}

/* ------------------------------------------------------------------ stopping */

export interface StopTarget {
  pid: number
  /** Exact start ticks of the leader (from a pid file), if known. */
  startTicks?: number | null
  /** Start time of the leader in ms (from the document), if known. */
  startedAtMs?: number | null
  /** Machine the process runs on; only processes of this machine are signaled. */
  host?: string | null
}

/** Is the target's leader itself alive (not a zombie), still leading its group, and the process recorded? */
function leaderAlive(t: StopTarget): boolean {
  const p = processInfo(t.pid)
  if (!p || p.state === "Z" || p.state === "X" || p.pgrp !== t.pid) return false
  if (t.startTicks != null) return p.startTicks === t.startTicks
  if (t.startedAtMs != null) {
    const ms = ticksToMs(p.startTicks)
    return ms === undefined || Math.abs(ms - t.startedAtMs) < 2000
  }
  return true
}

/**
 * Is the leader's pid now another live process (started at another time than the one recorded)? Then
 * the recorded group is gone: Linux does not hand out a pid that is still in use as a process group id,
 * so a group with that id is someone else's.
 */
function pidReused(t: StopTarget): boolean {
  const p = processInfo(t.pid)
  if (!p || p.state === "Z" || p.state === "X") return false
  if (t.startTicks != null) return p.startTicks !== t.startTicks
  if (t.startedAtMs != null) {
    const ms = ticksToMs(p.startTicks)
    return ms !== undefined && Math.abs(ms - t.startedAtMs) >= 2000
  }
  return false
}

/**
 * Does any live process of the target's group remain? Cheap while the leader lives (one /proc read);
 * a scan of /proc only once the leader is gone and something in the group still is.
 */
function groupAlive(t: StopTarget): boolean {
  try {
    process.kill(-t.pid, 0)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false
  }
  if (pidReused(t)) return false
  return leaderAlive(t) || liveMembers(t).length > 0
}

/** Live members of the target's process group that started no earlier than its leader. */
export function liveMembers(t: StopTarget): number[] {
  const members = processGroupMembers(t.pid)
  const bootMs = bootTime()
  return members
    .filter(m => {
      if (t.startTicks != null) return m.startTicks >= t.startTicks
      if (t.startedAtMs != null && bootMs !== undefined) return (ticksToMs(m.startTicks) ?? 0) >= t.startedAtMs - 2000
      return true
    })
    .map(m => m.pid)
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal)
  } catch {
    try {
      process.kill(pid, signal)
    } catch {
      // gone
    }
  }
}

/**
 * Stop a job's process group: SIGTERM to the group, then SIGKILL once `graceMs` passed, repeated until
 * no member lives (the leader exiting first changes nothing). Resolves "gone" when the group is gone,
 * "not_found" if no live group of that identity exists, "other_host" for another machine's process.
 */
export async function stopJobProcess(
  t: StopTarget,
  opts: { host: string; graceMs: number; pollMs?: number; onSignal?: (signal: NodeJS.Signals) => void; signal?: AbortSignal }
): Promise<"gone" | "not_found" | "other_host" | "aborted"> {
  if (t.host && t.host !== opts.host) return "other_host"
  if (!groupAlive(t)) return "not_found"
  const state: StopState = { termAt: null, killAt: null }
  for (;;) {
    const now = Date.now()
    const step = stopStep(state, groupAlive(t), now, opts.graceMs)
    if (step === "done") return "gone"
    if (step === "SIGTERM" || step === "SIGKILL") {
      signalGroup(t.pid, step)
      opts.onSignal?.(step)
      if (step === "SIGTERM") state.termAt = now
      else state.killAt = now
    }
    if (!(await sleep(opts.pollMs ?? 100, opts.signal))) return "aborted"
  }
}

/* --------------------------------------------------------------- the wrapper */

/**
 * Writes `<pid> <start ticks>` to $CONCORD_PID_FILE, runs the command, writes its exit code to
 * $CONCORD_EXIT_FILE; each file by rename, so it is whole or absent. `${20}` is field 22 of
 * /proc/self/stat (start time in clock ticks), after the command name.
 */
const WRAPPER = [
  `t=""; if read -r s < /proc/$$/stat 2>/dev/null; then r=\${s##*") "}; set -- $r; t=\${20}; fi`,
  // no pid file, no command: a restarted orchestrator reads "no pid file" as "its command never ran"
  `printf '%s %s\\n' "$$" "$t" > "$CONCORD_PID_FILE.tmp" && mv -f "$CONCORD_PID_FILE.tmp" "$CONCORD_PID_FILE" || { echo "concord: could not write $CONCORD_PID_FILE; the job was not started" >&2; exit 125; }`,
  `/bin/sh -c "$CONCORD_RUN"; code=$?`,
  `printf '%s\\n' "$code" > "$CONCORD_EXIT_FILE.tmp" && mv -f "$CONCORD_EXIT_FILE.tmp" "$CONCORD_EXIT_FILE"`,
  `exit $code`,
].join("\n")

function signalName(n: number): string {
  const entry = Object.entries(os.constants.signals).find(([, v]) => v === n)
  return entry ? entry[0] : `signal ${n}`
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8")
  } catch {
    return undefined
  }
}

/* --------------------------------------------------------- the real supervisor */

interface Watched extends WatchedProcess {
  startTicks: number | null
  files: ReturnType<typeof jobFiles>
  /** Set once the leader ended (reported by poll once). */
  leaderExit?: ExitInfo
  reported: boolean
  /** The exit event of a child this process spawned. */
  childExit?: ExitInfo
  child?: ChildProcess
  stopping?: string
}

export interface ProcessSupervisorOptions {
  storeDir: string
  planId: string
  host: string
  /** Delay between SIGTERM and SIGKILL when stopping a job. */
  killGraceMs: number
  /** Called when something happens that the runner should look at soon (a child exited, a stop finished). */
  onChange?: () => void
  onEvent?: (line: string) => void
}

export class ProcessSupervisor implements JobSupervisor {
  readonly #o: ProcessSupervisorOptions
  readonly #watched = new Map<string, Watched>()
  readonly #abort = new AbortController()

  constructor(opts: ProcessSupervisorOptions) {
    this.#o = opts
  }

  #files(job: string, attempt: number) {
    return jobFiles(this.#o.storeDir, this.#o.planId, job, attempt)
  }

  async spawn(spec: LaunchSpec): Promise<LaunchResult> {
    const files = this.#files(spec.job, spec.attempt)
    let child: ChildProcess
    try {
      ensureDirInSync(path.resolve(this.#o.storeDir), path.dirname(files.log))
      writeFileSync(files.prompt, spec.prompt)
      const fd = openSync(files.log, "a")
      try {
        // spawn throws at once for most errors (E2BIG: environment too large), emits "error" for others.
        child = spawn("/bin/sh", ["-c", WRAPPER], {
          cwd: spec.cwd,
          detached: true,
          stdio: ["ignore", fd, fd],
          env: {
            ...spec.env,
            CONCORD_PROMPT_FILE: files.prompt,
            CONCORD_RUN: spec.run,
            CONCORD_PID_FILE: files.pid,
            CONCORD_EXIT_FILE: files.exit,
          },
        })
      } finally {
        closeSync(fd)
      }
    } catch (e) {
      return { ok: false, reason: `could not start the process: ${(e as Error).message}` }
    }
    const pid = child.pid
    if (pid === undefined) {
      const err = await new Promise<Error>(r => child.once("error", r))
      return { ok: false, reason: `could not start the process: ${err.message}` }
    }
    child.on("error", () => {})
    const startTicks = processStartTicks(pid) ?? null
    const w: Watched = { job: spec.job, attempt: spec.attempt, pid, startTicks, startedAtMs: msOf(startTicks), adopted: false, files, reported: false, child }
    this.#watched.set(key(spec.job, spec.attempt), w)
    child.on("exit", (code, signal) => {
      w.childExit = { code, signal }
      this.#o.onChange?.()
    })
    child.unref()
    return { ok: true, pid, startTicks }
  }

  adoptAll(recorded: readonly RecordedProcess[]): WatchedProcess[] {
    const found: WatchedProcess[] = []
    const consider = (job: string, attempt: number, t: StopTarget, files: ReturnType<typeof jobFiles>) => {
      const k = key(job, attempt)
      if (this.#watched.has(k) || !groupAlive(t)) return
      const startTicks = t.startTicks ?? null
      const startedAtMs = startTicks !== null ? msOf(startTicks) : (t.startedAtMs ?? null)
      const w: Watched = { job, attempt, pid: t.pid, startTicks, startedAtMs, adopted: true, files, reported: false }
      this.#watched.set(k, w)
      found.push({ job, attempt, pid: w.pid, startedAtMs, adopted: true })
    }
    const dir = path.join(this.#o.storeDir, "logs", this.#o.planId)
    let names: string[] = []
    try {
      names = readdirSync(dir)
    } catch {
      // no job ever started here
    }
    const boot = bootTime() ?? 0
    for (const name of names) {
      const m = /^(.+)\.(\d+)\.pid$/.exec(name)
      if (!m) continue
      const file = path.join(dir, name)
      const info = parsePidFile(readText(file) ?? "")
      // A pid file from before the last boot names nothing that still runs.
      if (!info || statMtime(file) < boot) continue
      consider(m[1], Number(m[2]), { pid: info.pid, startTicks: info.startTicks }, this.#files(m[1], Number(m[2])))
    }
    for (const r of recorded) consider(r.job, r.attempt, { pid: r.pid, startedAtMs: r.startedAtMs }, this.#files(r.job, r.attempt))
    return found
  }

  poll(): { alive: Set<string>; exits: ProcessExit[] } {
    const alive = new Set<string>()
    const exits: ProcessExit[] = []
    for (const [k, w] of this.#watched) {
      if (!w.leaderExit) w.leaderExit = this.#leaderEnded(w)
      if (w.leaderExit && !w.reported) {
        w.reported = true
        exits.push({ job: w.job, attempt: w.attempt, ...w.leaderExit, at: Date.now(), ...(w.stopping ? { stoppedFor: w.stopping } : {}) })
      }
      if (!w.leaderExit || groupAlive(w)) alive.add(k)
      else this.#watched.delete(k)
    }
    return { alive, exits }
  }

  /** How the leader ended, or undefined while it lives. */
  #leaderEnded(w: Watched): ExitInfo | undefined {
    if (w.child) {
      // Our own child: its exit event is the authority (the exit file says the same, or nothing if the
      // wrapper itself was killed).
      if (!w.childExit) return undefined
      const file = readText(w.files.exit)
      if (w.childExit.code !== null && file !== undefined) {
        const parsed = parseExitFile(file, signalName)
        if (!parsed.unknown) return parsed
      }
      return w.childExit
    }
    if (leaderAlive(w)) return undefined
    const file = readText(w.files.exit)
    if (file === undefined) return { code: null, signal: null, unknown: "its wrapper left no exit code (exit code unknown)" }
    return parseExitFile(file, signalName)
  }

  stop(job: string, attempt: number, reason: string): boolean {
    const w = this.#watched.get(key(job, attempt))
    if (!w) return false
    if (w.stopping) return true
    w.stopping = reason
    this.#o.onEvent?.(`${job} #${attempt}: stopping process ${w.pid} (${reason})`)
    void stopJobProcess(w, {
      host: this.#o.host,
      graceMs: this.#o.killGraceMs,
      signal: this.#abort.signal,
      onSignal: s => {
        if (s === "SIGKILL") this.#o.onEvent?.(`${job} #${attempt}: process group ${w.pid} still alive after SIGTERM; sent SIGKILL`)
      },
    }).finally(() => this.#o.onChange?.())
    return true
  }

  inspect(job: string, attempt: number): { exit: ExitInfo | undefined; pidFile: boolean; logFile: boolean } {
    const files = this.#files(job, attempt)
    const text = readText(files.exit)
    return { exit: text === undefined ? undefined : parseExitFile(text, signalName), pidFile: existsSync(files.pid), logFile: existsSync(files.log) }
  }

  watched(): (WatchedProcess & { lastOutput: number | undefined })[] {
    return [...this.#watched.values()].map(w => {
      const m = statMtime(w.files.log)
      return { job: w.job, attempt: w.attempt, pid: w.pid, startedAtMs: w.startedAtMs, adopted: w.adopted, lastOutput: m > 0 ? m : undefined }
    })
  }

  close(): void {
    this.#abort.abort()
  }
}

function msOf(ticks: number | null): number | null {
  return ticks === null ? null : (ticksToMs(ticks) ?? null)
}

function statMtime(file: string): number {
  try {
    return statSync(file).mtimeMs
  } catch {
    return 0
  }
}

/**
 * The stop routine for job processes recorded in a plan (cancel, kill, every front end): each process
 * group on this machine that is still the recorded process gets stopJobProcess (SIGTERM, SIGKILL after
 * `graceMs`, until the group is gone); `force` sends SIGKILL at once. Resolves when all are gone; returns
 * how many were stopped.
 */
export async function stopJobProcesses(
  procs: { pid: number; pidStartedAt: number | null }[],
  opts: { force?: boolean; graceMs?: number } = {}
): Promise<number> {
  const host = hostName()
  const results = await Promise.all(
    procs.map(p => stopJobProcess({ pid: p.pid, startedAtMs: p.pidStartedAt }, { host, graceMs: opts.force ? 0 : (opts.graceMs ?? 5_000) }))
  )
  return results.filter(r => r === "gone").length
}
