/** Human rendering of a plan summary: header, one table row per job, counts, and what to do next. */
import path from "node:path"
import { type NextStep, nextSteps as stepsAt, type PlanSummary } from "../doc/summary.js"
import { ago, duration, table, truncate } from "./output.js"

const color = (code: number, s: string, on: boolean) => (on ? `\x1b[${code}m${s}\x1b[0m` : s)

const STATUS_COLOR: Record<string, number> = {
  completed: 32,
  merged: 32,
  failed: 31,
  conflict: 31,
  needs_rebase: 33,
  running: 36,
  canceled: 90,
  stopped: 33,
  queued: 90,
  waiting_deps: 90,
}

export function progressBar(p: number | null, width = 10): string {
  if (p === null) return " ".repeat(width + 5)
  const filled = Math.round((p / 100) * width)
  return `${"█".repeat(filled)}${"░".repeat(width - filled)} ${String(Math.round(p)).padStart(3)}%`
}

export function checkpointLine(s: PlanSummary): string | null {
  if (!s.checkpoint) return null
  const c = s.checkpointContext ?? {}
  const why: string[] = []
  if (typeof c.jobName === "string") why.push(`job ${c.jobName}${typeof c.attempt === "number" ? ` #${c.attempt}` : ""}`)
  if (typeof c.message === "string" && c.message) why.push(truncate(c.message, 80))
  else if (typeof c.failureKind === "string") why.push(c.failureKind + (typeof c.exitCode === "number" ? ` (exit ${c.exitCode})` : ""))
  if (typeof c.reason === "string" && c.reason) why.push(c.reason)
  return `checkpoint ${s.checkpoint}${why.length ? `: ${why.join(", ")}` : ""}`
}

export function renderStatus(s: PlanSummary, opts: { color?: boolean; now?: number; storeDir?: string } = {}): string[] {
  const on = opts.color ?? false
  const now = opts.now ?? Date.now()
  const lines: string[] = []
  lines.push(`Plan ${s.name}  (${s.id})`)
  const cp = checkpointLine(s)
  lines.push(`  ${s.mode} · ${color(STATUS_COLOR[s.status] ?? 0, s.status, on)}${cp ? ` at ${cp}` : ""}${s.completedAt ? ` · completed ${ago(s.completedAt, now)}` : ""}`)
  if (s.approvedBy) lines.push(`  approved by ${s.approvedBy}; the orchestrator resumes the plan when it runs`)
  if (s.lease) lines.push(`  run by ${s.lease.holder}`)
  lines.push("")
  const rows = [["JOB", "STATUS", "ATT", "PROGRESS", "TIME", "LAST REPORT"]]
  for (const j of s.jobs) {
    const flags = [j.skipped ? "skipped" : "", j.stale ? "stale" : ""].filter(Boolean)
    const st = `${j.status}${flags.length ? ` (${flags.join(", ")})` : ""}`
    const last = j.lastReport
      ? `${j.lastReport.status}${j.lastReport.message ? `: ${truncate(j.lastReport.message, 48)}` : ""} (${j.lastReport.by}, ${ago(j.lastReport.at, now)})`
      : ""
    rows.push([
      j.name,
      color(STATUS_COLOR[j.status] ?? 0, st, on),
      String(j.attempt),
      progressBar(j.progress),
      j.durationMs !== null ? duration(j.durationMs) : "",
      last,
    ])
  }
  lines.push(...table(rows).map(l => `  ${l}`))
  const details = s.jobs.filter(j => j.error || j.exitCode !== null || j.note || j.log)
  if (details.length) {
    lines.push("")
    for (const j of details) {
      const parts = [
        j.exitCode !== null ? `exit ${j.exitCode}` : "",
        j.signal ? `signal ${j.signal}` : "",
        j.error ? truncate(j.error, 80) : "",
        j.exitMeaning ?? "",
        j.note ?? "",
        j.log ? `log ${opts.storeDir ? path.join(opts.storeDir, j.log) : j.log}` : "",
      ].filter(Boolean)
      lines.push(`  ${j.name}#${j.attempt}: ${parts.join(" · ")}`)
    }
  }
  lines.push("")
  lines.push(`  ${Object.entries(s.counts).map(([k, n]) => `${n} ${k}`).join(", ")}`)
  return lines
}

/** The next steps at a checkpoint as commands to type. */
export function nextStepCommands(steps: NextStep[], planRef: string): string[] {
  return steps.map(st => {
    switch (st.kind) {
      case "retry":
        return `retry:    concord approve ${planRef} --retry ${st.job}`
      case "skip":
        return `skip:     concord approve ${planRef} --skip ${st.job}`
      case "continue":
        return `continue: concord approve ${planRef} --checkpoint ${st.checkpoint}`
      case "approve":
        return `approve:  concord approve ${planRef} --checkpoint ${st.checkpoint}`
    }
  })
}

/** What a human can do next at the plan's checkpoint, as commands (the rule: src/doc/summary.ts nextSteps). */
export function nextSteps(s: PlanSummary, planRef: string): string[] {
  return nextStepCommands(stepsAt(s), planRef)
}
