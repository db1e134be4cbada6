/**
 * Facts about OS processes, for telling a live job process from a dead one or a reused pid: a pid is
 * the same process only if its start time matches the one recorded when it was launched.
 */
import { readdirSync, readFileSync } from "node:fs"

const CLOCK_TICKS = 100 // USER_HZ on Linux

let bootTimeMs: number | undefined
/** When this machine booted (ms since the epoch, whole seconds), or undefined without /proc. */
export function bootTime(): number | undefined {
  if (bootTimeMs !== undefined) return bootTimeMs
  try {
    const m = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))
    bootTimeMs = m ? Number(m[1]) * 1000 : undefined
  } catch {
    bootTimeMs = undefined
  }
  return bootTimeMs
}

/** Fields 3.. of /proc/<pid>/stat (state, ppid, pgrp, ...), or undefined if the process is gone. */
function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name (field 2) may contain spaces and parentheses: split after the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  } catch {
    return undefined
  }
}

/** State, process group and start ticks of a process, or undefined if it is gone. */
export function processInfo(pid: number): { state: string; pgrp: number; startTicks: number } | undefined {
  const f = statFields(pid)
  return f ? { state: f[0], pgrp: Number(f[2]), startTicks: Number(f[19]) } : undefined
}

/**
 * Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat): exact, so a pid
 * plus its start ticks names one process for as long as the machine runs. Undefined if unknown/gone.
 */
export function processStartTicks(pid: number): number | undefined {
  const ticks = Number(statFields(pid)?.[19])
  return Number.isFinite(ticks) ? ticks : undefined
}

/** Convert start ticks (as written by a job wrapper) to ms since the epoch. */
export function ticksToMs(ticks: number): number | undefined {
  const boot = bootTime()
  return boot === undefined ? undefined : boot + Math.round((ticks * 1000) / CLOCK_TICKS)
}

/**
 * The live (not zombie) members of process group `pgid`, with their start ticks. A zombie cannot run
 * any more and may never be reaped where pid 1 does not reap orphans, so it does not count.
 * Linux never hands out a pid that is still some live group's id, so while members exist, `pgid`
 * names the same group it named when it was created.
 */
export function processGroupMembers(pgid: number): { pid: number; startTicks: number }[] {
  // Fast path: no process at all in the group.
  try {
    process.kill(-pgid, 0)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return []
  }
  const out: { pid: number; startTicks: number }[] = []
  let entries: string[]
  try {
    entries = readdirSync("/proc")
  } catch {
    // No /proc: trust kill(0) alone.
    return [{ pid: pgid, startTicks: 0 }]
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue
    const f = statFields(e)
    if (!f || f[0] === "Z" || f[0] === "X" || Number(f[2]) !== pgid) continue
    out.push({ pid: Number(e), startTicks: Number(f[19]) })
  }
  return out
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
  const state = statFields(pid)?.[0]
  if (state === undefined || state === "Z" || state === "X") return false
  if (startedAt === null) return true
  const ticks = processStartTicks(pid)
  const actual = ticks === undefined ? undefined : ticksToMs(ticks)
  // btime is in whole seconds: allow for rounding.
  return actual === undefined || Math.abs(actual - startedAt) < 2000
}
