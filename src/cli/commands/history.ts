import * as A from "@automerge/automerge"
import type { Command } from "commander"
import { parseChangeNote } from "../../doc/actor.js"
import { reportDocId } from "../../doc/ids.js"
import { readPlan } from "../../doc/plan.js"
import { type GlobalOptions, openStore } from "../context.js"
import { out, printJson, table } from "../output.js"

export interface HistoryEntry {
  at: number
  by: string
  did: string
  doc: string
  hash: string
  actor: string
}

function entries(doc: A.Doc<unknown>, label: string): HistoryEntry[] {
  return A.getChangesMetaSince(doc, []).map(c => {
    const note = parseChangeNote(c.message)
    return {
      at: note?.at ?? c.time * 1000,
      by: note?.by ?? `actor ${c.actor.slice(0, 8)}`,
      did: note?.did ?? c.message ?? "",
      doc: label,
      hash: c.hash,
      actor: c.actor,
    }
  })
}

export function registerHistory(program: Command, globals: () => GlobalOptions): void {
  program
    .command("history")
    .argument("[plan]", "plan id, url or name")
    .option("--json", "print as JSON")
    .description("every change to a plan and its report logs, oldest first: time, actor, what changed")
    .action(async (planRef: string | undefined, opts: { json?: boolean }) => {
      const store = openStore(globals())
      const entry = await store.resolvePlan(planRef)
      const plan = await store.loadPlan(entry.id)
      const all = entries(plan, "plan")
      for (const j of readPlan(plan).jobs) {
        const r = await store.docs.load<unknown>(reportDocId(entry.id, j.name))
        if (r) all.push(...entries(r, `reports:${j.name}`).filter(e => e.by !== "concord"))
      }
      all.sort((a, b) => a.at - b.at || a.hash.localeCompare(b.hash))
      if (opts.json) return printJson(all)
      for (const l of table([["TIME", "ACTOR", "CHANGE"], ...all.map(e => [new Date(e.at).toISOString(), e.by, e.did])])) out(l)
    })
}
