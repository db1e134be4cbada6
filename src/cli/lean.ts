/**
 * The lean start-up of a one-shot `concord report` (bin/concord.js loads it instead of the whole CLI):
 * the report command alone, over this machine's store, with nothing else of the CLI loaded (no other
 * command, no plan-file parser, no sync client). It runs the very code the full command runs
 * (src/cli/commands/report.ts, src/ops/endpoint.ts's `reportRouted`), so a report is taken or refused
 * with the same words and exit codes, and still goes to a running orchestrator's endpoint when one
 * serves the plan. Anything it does not take (a usage error, help, `--remote`) goes to the full CLI
 * untouched: it returns before it has read or written anything.
 */
import { Command } from "commander"
import { reportRouted } from "../ops/endpoint.js"
import { LocalBackend } from "../ops/local.js"
import { declareReport, printReport, type ReportOptions, reportInput } from "./commands/report.js"
import { clock, openStore } from "./context.js"
import { reportError } from "./errors.js"
import type { FastOutcome } from "./fast.js"

// The bundle (dist/cli/lean.js) holds its own copy of Automerge (scripts/bundle-cli.mjs): bin/concord.js
// initialises that copy with this, before the report runs.
export { initializeWasm } from "@automerge/automerge"

/**
 * `ready`: resolves once Automerge can run (bin/concord.js compiles its WebAssembly meanwhile). The
 * command's words are parsed and checked, and the store's files read, while it compiles; the store
 * waits for it before its first Automerge call (DocStoreOptions.ready). A `ready` that fails is thrown
 * as it is (a crash, not a refusal); nothing was written then.
 */
export async function leanReport(argv: string[], ready: Promise<unknown> = Promise.resolve()): Promise<FastOutcome> {
  let failed: { error: unknown } | undefined
  ready.catch(error => {
    failed = { error }
  })
  let outcome: FastOutcome = { argv }
  let run: (() => Promise<FastOutcome>) | undefined
  const silent = { writeOut: () => {}, writeErr: () => {} }
  const program = new Command().name("concord").option("--store <dir>").exitOverride().configureOutput(silent)
  declareReport(program)
    .exitOverride()
    .configureOutput(silent)
    .action((status: string, message: string | undefined, opts: ReportOptions) => {
      if (opts.remote || opts.token) return // a sync server: the full CLI
      try {
        const input = reportInput(status, message, opts)
        run = async () => {
          try {
            const backend = new LocalBackend(openStore(program.opts<{ store?: string }>(), false, ready))
            try {
              printReport(await reportRouted(backend, input, clock()), opts)
            } finally {
              await backend.close()
            }
            return { code: typeof process.exitCode === "number" ? process.exitCode : 0 }
          } catch (e) {
            // Automerge could not be made ready: a crash (the store's calls fail with that very error); a
            // refusal made before Automerge was needed (a bad status) is still a refusal
            if (failed && e === failed.error) throw e
            return { code: reportError(e) }
          }
        }
      } catch (e) {
        outcome = { code: reportError(e) }
      }
    })
  try {
    await program.parseAsync(argv)
  } catch {
    // a usage error, help: the full CLI says it properly
    return { argv }
  }
  return run ? run() : outcome
}
