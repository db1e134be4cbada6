/**
 * The lean start-up of a one-shot `concord report` (bin/concord.js tries it before loading the CLI):
 * when `concord run` serves the report's plan on this machine (src/sync/endpoint), the report goes there
 * and this process never loads Automerge or the other commands. Anything else (no endpoint, a plan not
 * given by id, a usage error, a refusal to check locally) goes back to the full CLI, which does the same
 * with the same words; when the report may already have been taken, with its report id, so that it is
 * stored once.
 */
import { Command } from "commander"
import { parseDocRef } from "../doc/ids.js"
import { type RoutedReport, reportViaEndpoint } from "../ops/endpoint-client.js"
import { locateStore } from "../sync/store/locate.js"
import { cliActor } from "./actor.js"
import { declareReport, printReport, type ReportOptions, reportInput } from "./commands/report.js"
import { say } from "./output.js"

export type FastOutcome = { code: number } | { argv: string[] }

export async function fastReport(argv: string[]): Promise<FastOutcome> {
  let outcome: FastOutcome = { argv }
  const program = new Command()
    .name("concord")
    .option("--store <dir>")
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {} })
  declareReport(program)
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {} })
    .action(async (status: string, message: string | undefined, opts: ReportOptions) => {
      const input = reportInput(status, message, opts)
      const planId = input.planRef ? parseDocRef(input.planRef.trim()) : undefined
      if (!planId || opts.remote || opts.token) return
      const storeDir = locateStore({ store: program.opts<{ store?: string }>().store }).dir
      let r: RoutedReport | undefined
      try {
        r = await reportViaEndpoint(storeDir, planId, input, cliActor())
      } catch (e) {
        const err = e as { message?: string; exitCode?: number }
        say(err.message ?? String(e))
        outcome = { code: typeof err.exitCode === "number" ? err.exitCode : 1 }
        return
      }
      if (r) {
        printReport(r, opts)
        outcome = { code: 0 }
      } else if (input.rid && !opts.id) {
        // not taken, but perhaps stored: the full CLI writes it to the store with the same report id
        const at = argv.findIndex((a, i) => i >= 2 && a === "report" && argv[i - 1] !== "--store")
        outcome = { argv: [...argv.slice(0, at + 1), "--id", input.rid, ...argv.slice(at + 1)] }
      }
    })
  try {
    await program.parseAsync(argv)
  } catch {
    // a usage error or a bad value: the full CLI says it properly
    return { argv }
  }
  return outcome
}
