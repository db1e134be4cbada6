/**
 * `concord doctor [--fix] [--json]`: what is wrong with a store's files, and put back what can be.
 *
 * Lists the quarantined chunk files (`<store>/quarantine/`): those that are valid now (a non-atomic
 * writer finished writing into a file after it was moved) are restored with --fix (restores also happen
 * automatically whenever a document is read); the others are reported with the reason. Also lists
 * damaged chunk files still in the documents' directories (skipped by every read); with --fix, those
 * damaged for longer than the grace period are quarantined, except a document's only data.
 * Exit 0 when nothing needs attention (after --fix), 1 otherwise.
 */
import type { Command } from "commander"
import { existsSync, promises as fsp } from "node:fs"
import { ConcordStorageAdapter, isDocChunkKey, verifyChunkFile } from "../../sync/storage/ConcordStorageAdapter.js"
import { restoreQuarantined, type RestoreOutcome } from "../../sync/storage/quarantine.js"
import { locateStore } from "../../sync/store/locate.js"
import type { GlobalOptions } from "../context.js"
import { ago, out, printJson } from "../output.js"

interface DoctorOptions {
  fix?: boolean
  json?: boolean
}

export function registerDoctor(program: Command, globals: () => GlobalOptions): void {
  program
    .command("doctor")
    .option("--fix", "restore quarantined chunks that are valid; quarantine chunks damaged for longer than the grace period")
    .option("--json", "print JSON")
    .description("check the store's chunk files: quarantined and damaged data, and what can be restored")
    .action(async (opts: DoctorOptions) => {
      const dir = locateStore({ store: globals().store }).dir
      if (!existsSync(dir)) {
        const e = new Error(`no store at ${printable(dir)}`) as Error & { exitCode: number }
        e.exitCode = 1
        throw e
      }
      const report = await doctor(dir, opts.fix === true)
      if (opts.json) printJson(report)
      else for (const l of render(report, opts.fix === true)) out(l)
      process.exitCode = report.ok ? 0 : 1
    })
}

export interface DoctorReport {
  store: string
  ok: boolean
  quarantine: {
    file: string
    docId?: string
    type?: string
    outcome: "restored" | "restorable" | "duplicate" | "damaged" | "conflict" | "unknown"
    reason?: string
    target?: string
  }[]
  damaged: { file: string; docId: string; reason: string; modifiedAt: number; action: "left" | "quarantined" }[]
  warnings: string[]
}

async function doctor(dir: string, fix: boolean): Promise<DoctorReport> {
  const warnings: string[] = []
  const adapter = new ConcordStorageAdapter(dir, { autoRestore: false, onWarning: m => warnings.push(m) })

  // 1. the quarantine directory: restore what is valid now
  const outcomes = await restoreQuarantined(dir, { filePath: k => adapter.filePath(k), verify: verifyChunkFile }, { dryRun: !fix })
  // 2. damaged chunk files still in the documents' directories
  const damaged: DoctorReport["damaged"] = []
  for (const key of await adapter.listKeys([])) {
    if (!isDocChunkKey(key)) continue
    const file = adapter.filePath(key)
    const data = await fsp.readFile(file).catch(() => undefined)
    if (!data) continue
    const v = verifyChunkFile(key, data)
    if (v.ok) continue
    const st = await fsp.stat(file).catch(() => undefined)
    let action: "left" | "quarantined" = "left"
    if (fix) {
      await adapter.load(key) // quarantines it if damaged for the grace period and not the doc's only data
      if (!existsSync(file)) action = "quarantined"
    }
    damaged.push({ file, docId: key[0], reason: v.reason, modifiedAt: st?.mtimeMs ?? 0, action })
  }

  const quarantine = outcomes.map(o => ({
    file: o.file.file,
    docId: o.file.key?.[0],
    type: o.file.key?.[1],
    outcome: outcomeName(o, fix),
    reason: "reason" in o ? o.reason : undefined,
    target: "target" in o ? o.target : undefined,
  }))
  const ok = quarantine.every(q => q.outcome === "restored" || (q.outcome === "duplicate" && fix)) && damaged.length === 0
  return { store: dir, ok, quarantine, damaged, warnings }
}

function outcomeName(o: RestoreOutcome, fix: boolean): DoctorReport["quarantine"][number]["outcome"] {
  if (o.kind === "restored") return fix ? "restored" : "restorable"
  return o.kind
}

/** File names come from the disk: never print their control characters raw. */
function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, c => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`)
}

function render(r: DoctorReport, fix: boolean): string[] {
  const lines = [`store ${printable(r.store)}`]
  const q = r.quarantine
  if (q.length === 0) lines.push("quarantine: empty")
  else {
    lines.push(`quarantine: ${q.length} file${q.length === 1 ? "" : "s"}`)
    for (const e of q) {
      const name = printable(e.file)
      if (e.outcome === "restored") lines.push(`  restored    ${name} -> ${printable(e.target!)}`)
      else if (e.outcome === "restorable") lines.push(`  valid       ${name} (run concord doctor --fix to restore it)`)
      else if (e.outcome === "duplicate") lines.push(`  duplicate   ${name} (already in place${fix ? "; removed the copy" : ""})`)
      else lines.push(`  ${e.outcome.padEnd(11)} ${name}: ${printable(e.reason ?? "")}`)
    }
  }
  if (r.damaged.length === 0) lines.push("damaged chunks in place: none")
  else {
    lines.push(`damaged chunks in place: ${r.damaged.length} (skipped by every read)`)
    for (const d of r.damaged) {
      const what = d.action === "quarantined" ? "quarantined" : "left"
      lines.push(`  ${what.padEnd(11)} ${printable(d.file)}: ${printable(d.reason)} (modified ${ago(d.modifiedAt)})`)
    }
  }
  for (const w of r.warnings) lines.push(`  note: ${printable(w)}`)
  const left = q.filter(e => e.outcome !== "restored" && e.outcome !== "duplicate").length
  if (r.ok) lines.push("ok: nothing needs attention")
  else if (left > 0 && q.some(e => e.outcome === "restorable")) lines.push("run `concord doctor --fix` to restore the valid files")
  if (q.some(e => e.outcome === "damaged" || e.outcome === "unknown"))
    lines.push("damaged quarantined files cannot be loaded; keep them for inspection or delete them once you no longer need them")
  return lines
}
