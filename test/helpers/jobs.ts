/**
 * Job processes a test's plans started, stopped when the test is done: `concord run` starts each job
 * attempt as the leader of its own process group and lets it outlive the runner, so a test that failed,
 * timed out or killed its runner would otherwise leave sleep loops behind. Found by the pid files the
 * job wrapper writes (`<store>/logs/<plan>/<job>.<attempt>.pid`, see src/orchestrator/supervisor.ts),
 * and only signaled when the group is still the one the plan started (its leader's start time).
 */
import { readdirSync, readFileSync } from "node:fs"
import path from "node:path"
import { parsePidFile } from "../../src/orchestrator/policy.js"
import { processInfo } from "../../src/orchestrator/proc.js"
import { liveMembers } from "../../src/orchestrator/supervisor.js"
import { killChildrenIn } from "./processes.mjs"

/** The wrappers' pid files anywhere below `dir` (in a `logs/<plan>/` directory). */
function pidFiles(dir: string, depth = 0, out: string[] = []): string[] {
  let entries: import("node:fs").Dirent[]
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch {
    return out
  }
  for (const e of entries) {
    const p = path.join(dir, e.name)
    if (e.isDirectory() && depth < 6 && e.name !== "node_modules" && e.name !== ".git") pidFiles(p, depth + 1, out)
    else if (e.isFile() && e.name.endsWith(".pid") && path.basename(path.dirname(dir)) === "logs") out.push(p)
  }
  return out
}

/**
 * SIGKILL every live job process group that a plan stored below `dir` started, and every orchestrator
 * or server a test started there (test/helpers/processes.mjs). Synchronous, for afterAll/afterEach and
 * process exit. Returns how many groups were signaled.
 */
export function killJobProcesses(dir: string): number {
  killChildrenIn(dir)
  let n = 0
  for (const file of pidFiles(dir)) {
    let t: { pid: number; startTicks: number | null } | undefined
    try {
      t = parsePidFile(readFileSync(file, "utf8"))
    } catch {
      continue
    }
    if (!t) continue
    // A live process with the leader's pid that is not the leader the file records means the pid was
    // reused, so the plan's group is gone (Linux does not reuse a pid still in use as a group id). With
    // no live leader, members of its group may still run.
    const leader = processInfo(t.pid)
    const live = !!leader && leader.state !== "Z" && leader.state !== "X"
    const ours = live ? leader.pgrp === t.pid && (t.startTicks === null || leader.startTicks === t.startTicks) : liveMembers(t).length > 0
    if (!ours) continue
    try {
      process.kill(-t.pid, "SIGKILL")
      n++
    } catch {
      // gone meanwhile
    }
  }
  return n
}

/** Directories whose job processes are stopped when this test process exits, whatever happened. */
const watched = new Set<string>()
let hooked = false
export function stopJobsAtExit(dir: string): void {
  watched.add(dir)
  if (hooked) return
  hooked = true
  process.once("exit", () => {
    for (const d of watched) killJobProcesses(d)
  })
}
