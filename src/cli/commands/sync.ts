/**
 * Sync across machines: `concord serve` (a sync server over the local store), `concord sync URL`
 * (this store <-> a server, both ways) and `concord token add|list|revoke` (access tokens of a server).
 */
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import { locateStore } from "../../sync/store/locate.js"
import { type GlobalOptions, openStore } from "../context.js"
import { neutralize, out, printJson, table } from "../output.js"
import { collect, declareSync, intOption, printSyncResult, readCa, type SyncCliOptions, stamp, syncSettings } from "./sync-once.js"

export { readCa }

function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise(resolve => {
    const on = (s: NodeJS.Signals) => {
      process.off("SIGINT", on)
      process.off("SIGTERM", on)
      resolve(s)
    }
    process.on("SIGINT", on)
    process.on("SIGTERM", on)
  })
}

const isLoopback = (h: string) => h === "127.0.0.1" || h === "::1" || h === "localhost" || h.startsWith("127.")

interface ServeOptions {
  host: string
  port: string
  tokens?: string
  tlsCert?: string
  tlsKey?: string
  maxMessageBytes?: string
  helloTimeout?: string
  rate?: string
  burst?: string
  tokenMessageBytes?: string
  tokenDocs?: string
}

/** The plans a token can see on a server (`sync --list`, `plan list --remote`). */
export async function listServerPlans(url: string, token: string, ca: Buffer | undefined, json?: boolean): Promise<void> {
  const { ServerApi } = await import("../../sync/net/api.js")
  const r = await new ServerApi(url, token, ca).plans()
  if (json) return printJson(r.plans)
  if (r.plans.length === 0) return out(`no plans on ${url} for token ${r.token.id} (${r.token.role})`)
  for (const l of table([
    ["ID", "NAME", "STATUS", "JOBS", "ROLE"],
    ...r.plans.map(p => [p.id, p.name, p.checkpoint ? `${p.status} (${p.checkpoint})` : (p.status ?? ""), String(p.jobs.length), p.role]),
  ]))
    out(l)
}

export function registerSync(program: Command, globals: () => GlobalOptions): void {
  program
    .command("serve")
    .option("--host <host>", "address to bind (loopback unless told otherwise)", "127.0.0.1")
    .option("--port <port>", "port (0: any free port)", "7700")
    .option("--tokens <file>", "tokens file (default: <store>/tokens.json)")
    .option("--tls-cert <file>", "serve wss:// with this certificate (PEM)")
    .option("--tls-key <file>", "private key of --tls-cert (PEM)")
    .option("--max-message-bytes <n>", "largest WebSocket message accepted", String(64 * 1024 * 1024))
    .option("--hello-timeout <ms>", "close connections that do not join within this long", "10000")
    .option("--rate <n>", "messages per second each token may send (default 200)")
    .option("--burst <n>", "messages a token may send at once before --rate applies (default 2000)")
    .option("--token-message-bytes <n>", "largest sync message a token may send (default 16 MiB)")
    .option("--token-docs <n>", "documents each token may create on this server (default 1000)")
    .description("run a sync server over this store (until SIGINT/SIGTERM); clients need a token (concord token add)")
    .action(async (opts: ServeOptions) => {
      const port = intOption("--port", opts.port, 0, 65535)!
      const maxMessageBytes = intOption("--max-message-bytes", opts.maxMessageBytes, 1024, 2 ** 31 - 1)!
      const helloTimeoutMs = intOption("--hello-timeout", opts.helloTimeout, 100, 600_000)!
      const limits = {
        messagesPerSecond: intOption("--rate", opts.rate, 1, 1_000_000),
        burst: intOption("--burst", opts.burst, 1, 10_000_000),
        bytesPerMessage: intOption("--token-message-bytes", opts.tokenMessageBytes, 1024, 2 ** 31 - 1),
        docsPerToken: intOption("--token-docs", opts.tokenDocs, 1, 100_000_000),
      }
      if (!!opts.tlsCert !== !!opts.tlsKey) throw new InputError("--tls-cert and --tls-key go together")
      const { SyncServer, readPem } = await import("../../sync/net/server.js")
      const tls = opts.tlsCert ? { cert: await readPem(opts.tlsCert, "certificate"), key: await readPem(opts.tlsKey!, "key") } : undefined
      const storeDir = locateStore({ store: globals().store }).dir
      await openStore(globals()).create() // serving a store makes it; deleted later, it stays gone
      const server = new SyncServer({ storeDir, host: opts.host, port, tokensFile: opts.tokens, tls, maxMessageBytes, helloTimeoutMs, limits, log: stamp })
      // A failed background save must be logged, not kill the server (automerge-repo #389).
      process.on("unhandledRejection", e => stamp(`error: ${(e as Error)?.stack ?? String(e)}`))
      try {
        await server.start()
      } catch (e) {
        await server.close().catch(() => {})
        const code = (e as NodeJS.ErrnoException).code
        if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
          throw Object.assign(new Error(`cannot listen on ${opts.host}:${port}: ${code}`), { exitCode: 1 })
        }
        throw e
      }
      if (server.tokens.size === 0)
        stamp(`warning: no tokens in ${server.tokens.file}: every client is refused; add one with: concord token add --plan ID --role ROLE`)
      if (!tls && !isLoopback(opts.host))
        stamp(`warning: serving on ${opts.host} without TLS: tokens and plans travel in clear; use --tls-cert/--tls-key or a TLS proxy`)
      out(`concord sync server listening on ${server.url} (store ${storeDir}, ${server.tokens.size} token(s) in ${server.tokens.file})`)
      out(`dashboard: ${server.url.replace(/^ws/, "http")}/dashboard/?token=<a token>`)
      const sig = await waitForSignal()
      stamp(`${sig}: shutting down`)
      await server.close()
      stamp(`stopped; everything is written`)
    })

  declareSync(program).action(async (url: string, opts: SyncCliOptions) => {
    const settings = await syncSettings(url, opts)
    if (opts.list) return listServerPlans(url, settings.token, settings.ca, opts.json)
    const store = openStore(globals())
    await store.create() // syncing into a new store makes it; deleted later, it stays gone
    const { syncOnce, syncWatch } = await import("../../sync/net/sync.js")
    const base = { url, token: settings.token, ca: settings.ca, plans: opts.plan, log: settings.log }
    if (opts.watch) {
      const ac = new AbortController()
      void waitForSignal().then(s => {
        settings.log(`${s}: saving and disconnecting`)
        ac.abort()
      })
      await syncWatch(store, { ...base, signal: ac.signal, onSaved: ids => settings.log(`saved ${ids.length} document(s) from the server`) })
      return
    }
    printSyncResult(await syncOnce(store, { ...base, timeoutMs: settings.timeoutMs }), url, opts)
  })

  const token = program.command("token").description("access tokens of this store's sync server")
  token
    .command("add")
    .option("--plan <id>", 'plan id the token may sync ("*": every plan); repeatable', collect, [])
    .requiredOption("--role <role>", "admin | writer | reader | job:NAME")
    .option("--tokens <file>", "tokens file (default: <store>/tokens.json)")
    .option("--label <text>", "a note, e.g. who has it")
    .option("--json", "print {id, token, role, plans} as JSON")
    .description("create a token; prints its secret once (only its hash is stored)")
    .action(async (opts: { plan: string[]; role: string; tokens?: string; label?: string; json?: boolean }) => {
      const { addToken, defaultTokensFile } = await import("../../sync/net/tokens.js")
      const file = opts.tokens ?? defaultTokensFile(locateStore({ store: globals().store }).dir)
      const { secret, record } = await addToken(file, { plans: opts.plan, role: opts.role, label: opts.label })
      if (opts.json) return printJson({ id: record.id, token: secret, role: record.role, plans: record.plans, file })
      out(secret)
      process.stderr.write(
        `${neutralize(`token ${record.id}: ${record.role} on ${record.plans.join(", ")} (stored hashed in ${file}; the secret above is not shown again)`)}\n`
      )
    })
  token
    .command("list")
    .option("--tokens <file>", "tokens file (default: <store>/tokens.json)")
    .option("--json", "print as JSON")
    .description("list tokens (ids, roles, plans; never secrets)")
    .action(async (opts: { tokens?: string; json?: boolean }) => {
      const { readTokens, defaultTokensFile } = await import("../../sync/net/tokens.js")
      const file = opts.tokens ?? defaultTokensFile(locateStore({ store: globals().store }).dir)
      const { tokens } = await readTokens(file)
      const rows = tokens.map(t => ({ id: t.id, role: t.role, plans: t.plans, createdAt: t.createdAt, label: t.label ?? "" }))
      if (opts.json) return printJson(rows)
      if (rows.length === 0) return out(`no tokens in ${file}`)
      for (const l of table([["ID", "ROLE", "PLANS", "LABEL"], ...rows.map(r => [r.id, r.role, r.plans.join(","), r.label])])) out(l)
    })
  token
    .command("revoke")
    .argument("<id>", "token id (tk_...)")
    .option("--tokens <file>", "tokens file (default: <store>/tokens.json)")
    .option("--json", "print {id, revoked} as JSON")
    .description("remove a token; a running server refuses it for new connections within a second")
    .action(async (id: string, opts: { tokens?: string; json?: boolean }) => {
      const { revokeToken, defaultTokensFile } = await import("../../sync/net/tokens.js")
      const file = opts.tokens ?? defaultTokensFile(locateStore({ store: globals().store }).dir)
      if (!(await revokeToken(file, id))) throw new InputError(`no token ${id} in ${file}`)
      if (opts.json) return printJson({ id, revoked: true, file })
      out(`revoked ${id}`)
    })
}
