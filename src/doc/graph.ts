/** The dependency graph as Mermaid text, so it renders in GitHub and docs. Pure. */
import type { PlanView } from "./plan.js"

const CLASS: Record<string, string> = {
  completed: "done",
  merged: "done",
  failed: "failed",
  conflict: "failed",
  running: "running",
  canceled: "canceled",
  stopped: "canceled",
}

export function mermaidGraph(view: PlanView): string {
  const id = (name: string) => `j_${name.replace(/[^A-Za-z0-9_]/g, "_")}`
  const lines = ["flowchart LR"]
  for (const j of view.jobs) lines.push(`  ${id(j.name)}["${j.name}<br/>${j.status}${j.attempt > 1 ? ` #${j.attempt}` : ""}"]`)
  for (const j of view.jobs) for (const d of j.dependsOn) lines.push(`  ${id(d)} --> ${id(j.name)}`)
  for (const j of view.jobs) if (CLASS[j.status]) lines.push(`  class ${id(j.name)} ${CLASS[j.status]}`)
  lines.push(
    "  classDef done fill:#d4f7d4,stroke:#2a2",
    "  classDef failed fill:#f7d4d4,stroke:#a22",
    "  classDef running fill:#d4e8f7,stroke:#27a",
    "  classDef canceled fill:#eee,stroke:#999"
  )
  return lines.join("\n")
}
