/**
 * The dashboard's live log view: a job attempt's last lines, then every line appended, as printable text
 * for the page. Finding and reading the log (only files under `<store>/logs/`, the tail, following it)
 * is src/ops/logs.ts, as for `concord logs` and the MCP server; this module only shapes it for the page.
 */
import { NotFoundError } from "../doc/errors.js"
import type { PlanBackend } from "../ops/backend.js"
import { followLog, followStart, type LogInput, locateLog, tailLog } from "../ops/logs.js"

/** How many lines of the log the page gets before the live part. */
const PAGE_TAIL_LINES = 500

export interface PageLogEvents {
  /** The log was found (before any text): which attempt and file. */
  start(where: { planId: string; job: string; attempt: number; file: string }): void
  /** Printable text, whole lines each ending with a line break. */
  text(text: string): void
}

/**
 * Stream a job attempt's log to the page until `signal` aborts: `start`, the last `lines` lines, then every
 * line appended. A log file that does not exist yet (the job is starting) is waited for. Throws, before
 * `start`, the errors of src/ops/logs.ts (no such job or attempt, no log yet, a log outside the store).
 */
export async function streamJobLog(
  backend: PlanBackend,
  input: Omit<LogInput, "lines">,
  on: PageLogEvents,
  signal: AbortSignal,
  opts: { lines?: number; pollMs?: number } = {}
): Promise<void> {
  const where = await locateLog(backend, input)
  const at = { planRef: where.planId, job: where.job, attempt: where.attempt }
  let start = { lines: [] as string[], from: 0 }
  try {
    start = followStart(await tailLog(backend, { ...at, lines: opts.lines ?? PAGE_TAIL_LINES }))
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e // the file is not there yet: follow it from its start
  }
  on.start(where)
  if (start.lines.length) on.text(printable(`${start.lines.join("\n")}\n`))
  await followLog(backend, at, lines => on.text(printable(`${lines.join("\n")}\n`)), signal, { from: start.from, pollMs: opts.pollMs })
}

/** Log text with terminal escapes and control characters removed (newlines and tabs kept). */
export function printable(s: string): string {
  return s
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, "")
    .replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)?/g, "")
    .replace(/\r\n/g, "\n")
    .replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, "")
}
