/** `concord history`: a thin adapter over src/ops/history.ts. */
import type { Command } from "commander"
import { history } from "../../ops/history.js"
import { type GlobalOptions, openBackend, type RemoteOptions } from "../context.js"
import { out, printJson, table } from "../output.js"

export type { HistoryEntry } from "../../ops/history.js"

export function registerHistory(program: Command, globals: () => GlobalOptions): void {
  program
    .command("history")
    .argument("[plan]", "plan id, url or name")
    .option("--json", "print as JSON")
    .option("--remote <url>", "read the history from a sync server instead of the local store")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("every change to a plan and its report logs, oldest first: time, actor, what changed")
    .action(async (planRef: string | undefined, opts: RemoteOptions & { json?: boolean }) => {
      const backend = await openBackend(globals(), opts)
      try {
        const r = await history(backend, { planRef })
        if (opts.json) return printJson(r.entries)
        for (const l of table([["TIME", "ACTOR", "CHANGE"], ...r.entries.map(e => [new Date(e.at).toISOString(), e.by, e.did])])) out(l)
      } finally {
        await backend.close()
      }
    })
}
