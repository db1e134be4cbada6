/** Text content of the MCP tools: short lines a model reads, with no raw control characters. */
import type { NextStep, JobSummary, PlanSummary } from "../doc/summary.js"

/** Control characters (other than line breaks and tabs) shown as visible escapes, e.g. ESC as \x1b. */
export function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, c => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)
}

const one = (s: string, n = 160) => {
  const t = s.replace(/\s+/g, " ").trim()
  return t.length > n ? `${t.slice(0, n - 1)}…` : t
}

export function jobLine(j: JobSummary, detail = false): string {
  const parts = [`${j.name}: ${j.status}`, `#${j.attempt}`]
  if (j.progress !== null) parts.push(`${j.progress}%`)
  if (j.dependsOn.length) parts.push(`deps ${j.dependsOn.join(",")}`)
  if (j.stale) parts.push("STALE")
  let line = `  ${parts.join(" ")}`
  if (j.lastReport) line += ` | last report ${j.lastReport.status}${j.lastReport.message ? `: ${one(j.lastReport.message)}` : ""}`
  if (j.error) line += ` | error: ${one(j.error)}`
  if (detail) {
    if (j.exitCode !== null) line += ` | exit ${j.exitCode}`
    if (j.signal) line += ` | signal ${j.signal}`
    if (j.pid !== null) line += ` | pid ${j.pid}${j.host ? `@${j.host}` : ""}`
    if (j.log) line += ` | log ${j.log}`
  }
  return line
}

export function planLines(s: PlanSummary, next: NextStep[], warnings: string[]): string[] {
  const counts = Object.entries(s.counts)
    .map(([k, v]) => `${v} ${k}`)
    .join(", ")
  const lines = [
    `plan ${s.name} (${s.id}): ${s.status}, mode ${s.mode}${s.checkpoint ? `, waiting at checkpoint ${s.checkpoint}` : ""}`,
    `orchestrator: ${s.lease ? s.lease.holder : "none running"}`,
    `jobs: ${counts}`,
    ...s.jobs.map(j => jobLine(j)),
  ]
  if (next.length) {
    lines.push("next:")
    for (const n of next) {
      if (n.kind === "retry") lines.push(`  retry ${n.job}: mc_plan_approve {retry: "${n.job}"}`)
      else if (n.kind === "skip") lines.push(`  skip ${n.job}: mc_plan_approve {skip: "${n.job}"}`)
      else lines.push(`  ${n.kind === "continue" ? "continue without it" : "approve"}: mc_plan_approve {checkpoint: "${n.checkpoint}"}`)
    }
  }
  for (const w of warnings) lines.push(`warning: ${w}`)
  return lines
}
