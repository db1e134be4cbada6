/** `concord history`: a thin adapter over src/ops/history.ts. */
import type { Command } from "commander"
import { followHistory, history, type HistoryEntry, type HistoryInput } from "../../ops/history.js"
import { type GlobalOptions, openBackend, type RemoteOptions } from "../context.js"
import { out, printJson, printJsonLine, table } from "../output.js"
import { parseTime, parseWholeNumber } from "../parse.js"
import { waitForStopSignal } from "../signals.js"

interface HistoryOptions extends RemoteOptions {
  json?: boolean
  job?: string
  since?: string
  limit?: string
  follow?: boolean
}

export function registerHistory(program: Command, globals: () => GlobalOptions): void {
  program
    .command("history")
    .argument("[plan]", "plan id, url or name")
    .option("--json", "print as JSON (with --follow: one JSON object per line)")
    .option("--job <name>", "only changes about this job (its reports, and plan changes naming it)")
    .option("--since <time>", "only changes since this time: ISO time, epoch ms, or a duration ago (10m, 2h, 7d)")
    .option("--limit <n>", "only the last N changes")
    .option("--follow", "keep running and print new changes as they happen")
    .option("--remote <url>", "read the history from a sync server instead of the local store")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("every change to a plan and its report logs, oldest first: time, actor, what changed (reports with their message)")
    .action(async (planRef: string | undefined, opts: HistoryOptions) => {
      const input: HistoryInput = { planRef, job: opts.job, since: parseTime("--since", opts.since), limit: parseWholeNumber("--limit", opts.limit) }
      const backend = await openBackend(globals(), opts, { watch: opts.follow, retry: !!opts.follow })
      try {
        if (!opts.follow) {
          const r = await history(backend, input)
          if (opts.json) return printJson(r.entries)
          rows(r.entries, true, r.audited)
          if (r.flagged) out(`${r.flagged} change(s) claim an author their token does not speak for (marked !!)`)
          return
        }
        const ac = new AbortController()
        const stop = waitForStopSignal(ac)
        let header = true
        try {
          await followHistory(
            backend,
            input,
            entries => {
              if (opts.json) for (const e of entries) printJsonLine(e)
              else rows(entries, header, false)
              header = false
            },
            ac.signal
          )
        } finally {
          stop()
        }
      } finally {
        await backend.close()
      }
    })
}

function rows(entries: HistoryEntry[], header: boolean, audited: boolean): void {
  const body = entries.map(e => {
    const row = [new Date(e.at).toISOString(), e.by]
    if (audited) row.push(e.verified ? `verified: token ${e.verified.label ?? e.verified.token}` : "local (no token)")
    row.push(e.flag ? `${e.did}  !! ${e.flag}` : e.did)
    return row
  })
  const head = audited ? ["TIME", "ACTOR", "DELIVERED BY", "CHANGE"] : ["TIME", "ACTOR", "CHANGE"]
  out(table(header ? [head, ...body] : body))
}
