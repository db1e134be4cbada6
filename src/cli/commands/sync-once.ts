/**
 * The words of `concord sync URL` and what a one-shot sync prints: shared by the full CLI's command
 * (sync.ts) and the lean start-up of a one-shot sync (src/cli/lean-sync.ts), so both take, refuse and
 * print alike. Nothing here loads the sync client.
 */
import { promises as fsp } from "node:fs"
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import type { SyncResult } from "../../sync/net/sync.js"
import { parseServerUrl } from "../../sync/net/url.js"
import { neutralize, out, printJson } from "../output.js"

export const collect = (v: string, prev: string[]) => [...prev, v]

export function intOption(flag: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n < min || n > max)
    throw new InputError(`invalid ${flag} "${v}": expected an integer from ${min} to ${max}`)
  return n
}

/** A progress or log line on stderr, with its time. */
export function stamp(line: string): void {
  try {
    process.stderr.write(`${new Date().toISOString()} ${neutralize(line)}\n`)
  } catch {
    // stderr gone
  }
}

export async function readCa(file: string | undefined): Promise<Buffer | undefined> {
  if (!file) return undefined
  try {
    return await fsp.readFile(file)
  } catch (e) {
    throw new InputError(`cannot read CA file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
}

export interface SyncCliOptions {
  token?: string
  plan: string[]
  watch?: boolean
  timeout?: string
  json?: boolean
  list?: boolean
  ca?: string
  quiet?: boolean
}

/** `concord sync`'s arguments and options on `program`, without its action. */
export function declareSync(program: Command): Command {
  return program
    .command("sync")
    .argument("<url>", "server, e.g. ws://127.0.0.1:7700 or wss://sync.example.com")
    .option("--token <token>", "access token (default $CONCORD_TOKEN)")
    .option("--plan <id>", "sync only this plan (id, url, name or id prefix); repeatable", collect, [])
    .option("--watch", "stay connected and keep syncing both ways (reconnects with backoff)")
    .option("--timeout <s>", "give up after this many seconds (without --watch)", "120")
    .option("--list", "only list the plans this token can see on the server")
    .option("--ca <file>", "trust this CA certificate (PEM) for wss:// (or set NODE_EXTRA_CA_CERTS)")
    .option("--json", "print the result as JSON")
    .option("--quiet", "no progress lines on stderr")
    .description("sync this store's plans with a server, both ways (exit 0 once both sides have each other's changes)")
}

/** What a sync needs from its words, checked in this order (each refusal an InputError naming it). */
export async function syncSettings(
  url: string,
  opts: SyncCliOptions
): Promise<{ token: string; ca: Buffer | undefined; timeoutMs: number; log: (line: string) => void }> {
  parseServerUrl(url)
  const timeoutMs = intOption("--timeout", opts.timeout, 1, 86_400)! * 1000
  const token = opts.token ?? process.env.CONCORD_TOKEN
  if (!token) throw new InputError("no token: use --token T or set CONCORD_TOKEN (a server admin creates one with: concord token add)")
  const ca = await readCa(opts.ca)
  const log = opts.quiet ? () => {} : (l: string) => (l.startsWith("debug:") ? undefined : stamp(l))
  return { token, ca, timeoutMs, log }
}

/** A one-shot sync's outcome on stdout. */
export function printSyncResult(r: SyncResult, url: string, opts: SyncCliOptions): void {
  if (opts.json) return printJson(r)
  out(`synced ${r.plans.length} plan(s) with ${url} in ${(r.ms / 1000).toFixed(1)}s`)
  for (const p of r.plans) {
    const what = [p.newHere ? "new here" : "", p.newThere ? "new on the server" : "", p.received ? `received ${p.received} change(s)` : "nothing new received"]
      .filter(Boolean)
      .join(", ")
    out(`  ${p.id}  ${p.name}  ${p.docs} document(s); ${what}`)
  }
  for (const s of r.skipped) out(`  skipped ${s.id}: ${s.why}`)
}
