/**
 * The lean start-up of a one-shot `concord sync URL` (bin/concord.js loads it instead of the CLI): the
 * sync command alone, by direct change exchange (src/sync/net/bulk.ts), with nothing else of the CLI
 * loaded (no other command, no automerge-repo, no server code). Its words, refusals and output are the
 * full command's (src/cli/commands/sync-once.ts). Anything it does not take goes to the full CLI with
 * the words it was given, before anything was read or written: a usage error, help, `--watch`, `--list`,
 * CONCORD_SYNC_EXCHANGE=0, and a server that declines the exchange (an older concord, a request over its
 * size limit), which the full CLI then syncs through the sync protocol (it is told not to ask again).
 */
import { Command } from "commander"
import { syncOnceByExchange } from "../sync/net/bulk.js"
import { declareSync, printSyncResult, type SyncCliOptions, syncSettings } from "./commands/sync-once.js"
import { openStore } from "./context.js"
import { reportError } from "./errors.js"
import type { FastOutcome } from "./fast.js"

// The bundle (dist/cli/lean-sync.js) holds its own copy of Automerge (scripts/bundle-cli.mjs): bin/concord.js
// initialises that copy with this, before the sync runs.
export { initializeWasm } from "@automerge/automerge"

/**
 * `ready`: resolves once Automerge can run (bin/concord.js compiles its WebAssembly meanwhile). The words
 * are checked, the server's plan list asked for and the store's files read while it compiles. A `ready`
 * that fails is thrown as it is (a crash, not a refusal); nothing was written then.
 */
export async function leanSync(argv: string[], ready: Promise<unknown> = Promise.resolve()): Promise<FastOutcome> {
  let failed: { error: unknown } | undefined
  ready.catch(error => {
    failed = { error }
  })
  let run: (() => Promise<FastOutcome>) | undefined
  const silent = { writeOut: () => {}, writeErr: () => {} }
  const program = new Command().name("concord").option("--store <dir>").exitOverride().configureOutput(silent)
  declareSync(program)
    .exitOverride()
    .configureOutput(silent)
    .action((url: string, opts: SyncCliOptions) => {
      if (opts.watch || opts.list || process.env.CONCORD_SYNC_EXCHANGE === "0") return // the full CLI
      run = async () => {
        try {
          const { token, ca, timeoutMs, log } = await syncSettings(url, opts)
          const store = openStore(program.opts<{ store?: string }>(), false, ready)
          await store.create() // syncing into a new store makes it; deleted later, it stays gone
          const r = await syncOnceByExchange(store, { url, token, ca, plans: opts.plan, log, timeoutMs }, ready)
          if ("declined" in r) {
            // nothing written: the full CLI syncs through the sync protocol, without asking again
            process.env.CONCORD_SYNC_EXCHANGE = "0"
            return { argv }
          }
          printSyncResult(r, url, opts)
          return { code: typeof process.exitCode === "number" ? process.exitCode : 0 }
        } catch (e) {
          // Automerge could not be made ready: a crash; a refusal made before Automerge was needed stays one
          if (failed && e === failed.error) throw e
          return { code: reportError(e) }
        }
      }
    })
  try {
    await program.parseAsync(argv)
  } catch {
    // a usage error, help: the full CLI says it properly
    return { argv }
  }
  return run ? run() : { argv }
}
