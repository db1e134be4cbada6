/**
 * Facts about OS processes, for telling a live job process from a dead one or a reused pid: a pid is
 * the same process only if its start time matches the one recorded when it was launched.
 */
import { readFileSync } from "node:fs"

const CLOCK_TICKS = 100 // USER_HZ on Linux

let bootTimeMs: number | undefined
function bootTime(): number | undefined {
  if (bootTimeMs !== undefined) return bootTimeMs
  try {
    const m = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))
    bootTimeMs = m ? Number(m[1]) * 1000 : undefined
  } catch {
    bootTimeMs = undefined
  }
  return bootTimeMs
}

/** Start time of a process in ms since the epoch (Linux /proc), or undefined if unknown/gone. */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name (field 2) may contain spaces and parentheses: split after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    const ticks = Number(fields[19]) // field 22 overall
    const boot = bootTime()
    if (!Number.isFinite(ticks) || boot === undefined) return undefined
    return boot + Math.round((ticks * 1000) / CLOCK_TICKS)
  } catch {
    return undefined
  }
}

export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Is `pid` still the process that started at `startedAt` (ms)? Zombies count as gone. */
export function isSameProcessAlive(pid: number, startedAt: number | null): boolean {
  if (!pidExists(pid)) return false
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0]
    if (state === "Z" || state === "X") return false
  } catch {
    return false
  }
  if (startedAt === null) return true
  const actual = processStartTime(pid)
  // btime is in whole seconds: allow for rounding.
  return actual === undefined || Math.abs(actual - startedAt) < 2000
}

/** Signal a job's whole process group (jobs are started as group leaders), falling back to the pid. */
export function signalJob(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal)
    return true
  } catch {
    try {
      process.kill(pid, signal)
      return true
    } catch {
      return false
    }
  }
}

/**
 * Stop job processes of this machine that are still the processes that were launched: SIGTERM to each
 * one's process group, then SIGKILL after `graceMs` to any that is still the same process (the timer
 * does not keep a short-lived command alive). `force`: SIGKILL at once. Returns how many were signaled.
 */
export async function stopJobProcesses(
  procs: { pid: number; pidStartedAt: number | null }[],
  opts: { force?: boolean; graceMs?: number } = {}
): Promise<number> {
  let n = 0
  for (const p of procs) {
    if (!isSameProcessAlive(p.pid, p.pidStartedAt)) continue
    if (!signalJob(p.pid, opts.force ? "SIGKILL" : "SIGTERM")) continue
    n++
    if (!opts.force) {
      const t = setTimeout(() => {
        if (isSameProcessAlive(p.pid, p.pidStartedAt)) signalJob(p.pid, "SIGKILL")
      }, opts.graceMs ?? 5_000)
      t.unref()
    }
  }
  return n
}
