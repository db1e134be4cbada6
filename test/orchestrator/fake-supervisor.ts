/**
 * A JobSupervisor without processes, for unit tests of the runner's decisions: spawns are recorded,
 * exits and lingering process groups are scripted by the test, stops are recorded and (by default)
 * end the group at once.
 */
import type { ExitInfo } from "../../src/orchestrator/policy.js"
import { key, type ProcessExit } from "../../src/orchestrator/scheduler.js"
import type { JobSupervisor, LaunchResult, LaunchSpec, RecordedProcess, WatchedProcess } from "../../src/orchestrator/supervisor.js"

interface FakeProc {
  job: string
  attempt: number
  pid: number
  adopted: boolean
  leaderExit?: ExitInfo
  groupAlive: boolean
  reported: boolean
  stopping?: string
}

export class FakeSupervisor implements JobSupervisor {
  readonly spawned: LaunchSpec[] = []
  readonly stops: { job: string; attempt: number; reason: string; at: number }[] = []
  readonly procs = new Map<string, FakeProc>()
  /** Live processes a restarted runner can find (as if by their pid files), by "job#n". */
  readonly discoverable = new Map<string, { pid: number }>()
  /** What unwatched attempts left behind (exit file, pid file, log file: assumed there unless false), by "job#n". */
  readonly leftBehind = new Map<string, { exit?: ExitInfo; pidFile: boolean; logFile?: boolean }>()
  /** Return a reason to make a spawn fail. */
  failSpawn?: (spec: LaunchSpec) => string | undefined
  /** When false, a stopped group keeps living (a process ignoring every signal). */
  stopKills = true
  #nextPid = 1000

  async spawn(spec: LaunchSpec): Promise<LaunchResult> {
    this.spawned.push(spec)
    const reason = this.failSpawn?.(spec)
    if (reason) return { ok: false, reason }
    const pid = this.#nextPid++
    this.procs.set(key(spec.job, spec.attempt), { job: spec.job, attempt: spec.attempt, pid, adopted: false, groupAlive: true, reported: false })
    return { ok: true, pid, startTicks: pid }
  }

  adoptAll(_recorded: readonly RecordedProcess[]): WatchedProcess[] {
    const out: WatchedProcess[] = []
    for (const [k, d] of this.discoverable) {
      if (this.procs.has(k)) continue
      const [job, n] = [k.slice(0, k.lastIndexOf("#")), Number(k.slice(k.lastIndexOf("#") + 1))]
      this.procs.set(k, { job, attempt: n, pid: d.pid, adopted: true, groupAlive: true, reported: false })
      out.push({ job, attempt: n, pid: d.pid, startedAtMs: null, adopted: true })
    }
    this.discoverable.clear()
    return out
  }

  poll(): { alive: Set<string>; exits: ProcessExit[] } {
    const alive = new Set<string>()
    const exits: ProcessExit[] = []
    for (const [k, p] of this.procs) {
      if (p.leaderExit && !p.reported) {
        p.reported = true
        exits.push({ job: p.job, attempt: p.attempt, ...p.leaderExit, at: Date.now(), ...(p.stopping ? { stoppedFor: p.stopping } : {}) })
      }
      if (p.groupAlive || !p.leaderExit) alive.add(k)
      else this.procs.delete(k)
    }
    return { alive, exits }
  }

  stop(job: string, attempt: number, reason: string): boolean {
    const p = this.procs.get(key(job, attempt))
    if (!p) return false
    if (p.stopping) return true
    p.stopping = reason
    this.stops.push({ job, attempt, reason, at: Date.now() })
    if (this.stopKills) {
      p.leaderExit ??= { code: null, signal: "SIGTERM" }
      p.groupAlive = false
    }
    return true
  }

  inspect(job: string, attempt: number): { exit: ExitInfo | undefined; pidFile: boolean; logFile: boolean } {
    const l = this.leftBehind.get(key(job, attempt))
    return { exit: l?.exit, pidFile: l?.pidFile ?? false, logFile: l?.logFile ?? true }
  }

  watched(): (WatchedProcess & { lastOutput: number | undefined })[] {
    return [...this.procs.values()].map(p => ({ job: p.job, attempt: p.attempt, pid: p.pid, startedAtMs: null, adopted: p.adopted, lastOutput: undefined }))
  }

  close(): void {}

  /** Script: the attempt's command exits with `code` (its whole group ends too unless `linger`). */
  exit(job: string, attempt: number, code: number | null, opts: { signal?: string; linger?: boolean } = {}): void {
    const p = this.procs.get(key(job, attempt))
    if (!p) throw new Error(`no process for ${job}#${attempt}`)
    p.leaderExit = { code, signal: opts.signal ?? null }
    p.groupAlive = !!opts.linger
  }
}
