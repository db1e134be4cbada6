/** Human rendering of a plan summary: header, one table row per job, counts, and what to do next. */
import path from "node:path"
import { type NextStep, nextSteps as stepsAt, type PlanSummary } from "../doc/summary.js"
import { ago, concat, duration, paint, richOutput, type Styled, table, type Text, truncate } from "./output.js"

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

/** A progress bar: Unicode blocks on a rich terminal, ASCII (`####......`) elsewhere. */
function progressBar(p: number | null, width = 10, unicode = richOutput()): string {
  if (p === null) return " ".repeat(width + 5)
  const filled = Math.round((p / 100) * width)
  const [on, off] = unicode ? ["█", "░"] : ["#", "."]
  return `${on.repeat(filled)}${off.repeat(width - filled)} ${String(Math.round(p)).padStart(3)}%`
}

function checkpointLine(s: PlanSummary): string | null {
  if (!s.checkpoint) return null
  const c = s.checkpointContext ?? {}
  const why: string[] = []
  if (typeof c.jobName === "string") why.push(`job ${c.jobName}${typeof c.attempt === "number" ? ` #${c.attempt}` : ""}`)
  if (typeof c.message === "string" && c.message) why.push(truncate(c.message, 80))
  else if (typeof c.failureKind === "string") why.push(c.failureKind + (typeof c.exitCode === "number" ? ` (exit ${c.exitCode})` : ""))
  if (typeof c.reason === "string" && c.reason) why.push(c.reason)
  return `checkpoint ${s.checkpoint}${why.length ? `: ${why.join(", ")}` : ""}`
}

/**
 * The status view as lines of human text (written with `out`, which neutralises what a plan or report
 * carries). `rich` (default: `richOutput()`) chooses Unicode progress bars; colour is decided by `out`.
 */
export function renderStatus(s: PlanSummary, opts: { rich?: boolean; now?: number; storeDir?: string } = {}): Text[] {
  const rich = opts.rich ?? richOutput()
  const now = opts.now ?? Date.now()
  const lines: Text[] = []
  lines.push(`Plan ${s.name}  (${s.id})`)
  const cp = checkpointLine(s)
  lines.push(
    concat(
      `  ${s.mode} · `,
      paint(STATUS_COLOR[s.status] ?? 0, s.status),
      `${cp ? ` at ${cp}` : ""}${s.completedAt ? ` · completed ${ago(s.completedAt, now)}` : ""}`
    )
  )
  if (s.approvedBy) lines.push(`  approved by ${s.approvedBy}; the orchestrator resumes the plan when it runs`)
  if (s.lease) lines.push(`  run by ${s.lease.holder}`)
  lines.push("")
  const rows: Text[][] = [["JOB", "STATUS", "ATT", "PROGRESS", "TIME", "LAST REPORT"]]
  for (const j of s.jobs) {
    const flags = [j.skipped ? "skipped" : "", j.stale ? "stale" : ""].filter(Boolean)
    const st = `${j.status}${flags.length ? ` (${flags.join(", ")})` : ""}`
    const last = j.lastReport
      ? `${j.lastReport.status}${j.lastReport.message ? `: ${truncate(j.lastReport.message, 48)}` : ""} (${j.lastReport.by}, ${ago(j.lastReport.at, now)})`
      : ""
    rows.push([
      j.name,
      paint(STATUS_COLOR[j.status] ?? 0, st),
      String(j.attempt),
      progressBar(j.progress, 10, rich),
      j.durationMs !== null ? duration(j.durationMs) : "",
      last,
    ])
  }
  lines.push(...table(rows).map((l: Styled) => concat("  ", l)))
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
  lines.push(
    `  ${Object.entries(s.counts)
      .map(([k, n]) => `${n} ${k}`)
      .join(", ")}`
  )
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
