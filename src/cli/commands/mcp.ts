/**
 * `concord mcp`: concord's MCP server on stdio (src/mcp/server.ts), for agent CLIs (Claude Code, Codex,
 * OpenCode, Cursor, Gemini CLI). Long-lived: one process per agent session keeps the store open, so its
 * plan and report log stay loaded (a report reads only chunk files that are new since its last call)
 * and every call still sees what other processes wrote. Job identity comes from the flags only, never
 * from the working directory or inherited environment variables.
 */
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import type { ProcessStopper } from "../../ops/cancel.js"
import { resolvePlan } from "../../ops/resolve.js"
import { stopJobProcesses } from "../../orchestrator/supervisor.js"
import { cliActor, type GlobalOptions, openBackend, type RemoteOptions } from "../context.js"
import { parseWholeNumber } from "../parse.js"
import { packageVersion } from "../version.js"

interface McpOptions extends RemoteOptions {
  plan?: string
  job?: string
  attempt?: string
  agent?: string
}

export function registerMcp(program: Command, globals: () => GlobalOptions): void {
  program
    .command("mcp")
    .option("--plan <plan>", "the plan this server is for (default for every tool; else the store's latest plan)")
    .option("--job <name>", "the job this server speaks for (mc_report needs it)")
    .option("--attempt <n>", "the job's attempt (default: its current attempt)")
    .option("--agent <command>", "`run` for jobs created with mc_plan that give none")
    .option("--remote <url>", "work against a sync server instead of the local store")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("MCP server on stdio: agents report and read the plan with mc_* tools (concord run writes its config per job: $CONCORD_MCP_CONFIG)")
    .action(async (opts: McpOptions) => {
      const attempt = parseWholeNumber("--attempt", opts.attempt)
      if (attempt !== undefined && attempt < 1) throw new InputError(`invalid --attempt "${opts.attempt}": expected a whole number from 1`)
      const { JOB_NAME_PATTERN } = await import("../../doc/spec.js")
      if (opts.job !== undefined && !JOB_NAME_PATTERN.test(opts.job)) throw new InputError(`invalid --job "${opts.job}": must match [A-Za-z0-9._-]{1,64}`)
      if (attempt !== undefined && !opts.job) throw new InputError("--attempt needs --job")
      // Loaded only here: the SDK is not needed by any other command.
      const [{ StdioServerTransport }, { createMcpServer }] = await Promise.all([
        import("@modelcontextprotocol/sdk/server/stdio.js"),
        import("../../mcp/server.js"),
      ])
      const backend = await openBackend(globals(), opts, { watch: true, retry: true, live: true })
      const stop: ProcessStopper = (procs, o) => stopJobProcesses(procs, o)
      const server = createMcpServer(backend, {
        plan: opts.plan,
        job: opts.job,
        attempt,
        agent: opts.agent,
        baseDir: process.cwd(),
        stop,
        user: cliActor({}),
        version: packageVersion(),
      })
      const transport = new StdioServerTransport()
      await server.connect(transport)
      // Requests in flight: on the end of stdin, finish them (their writes are durable once answered).
      let inFlight = 0
      let drained: (() => void) | undefined
      const onmessage = transport.onmessage
      transport.onmessage = m => {
        if ("method" in m && "id" in m) inFlight++
        onmessage?.(m)
      }
      const send = transport.send.bind(transport)
      transport.send = async m => {
        try {
          return await send(m)
        } finally {
          if (("result" in m || "error" in m) && "id" in m && --inFlight === 0) drained?.()
        }
      }
      process.stdout.on("error", () => {}) // the client went away: nothing to tell it
      // Warm the plan's documents while the client initializes.
      if (opts.plan) void resolvePlan(backend, opts.plan).catch(() => {})
      await new Promise<void>(resolve => {
        const done = () => resolve()
        process.stdin.once("end", done)
        process.stdin.once("close", done)
        process.once("SIGTERM", done)
        process.once("SIGINT", done)
      })
      if (inFlight > 0) await new Promise<void>(r => ((drained = r), setTimeout(r, 10_000).unref()))
      await server.close().catch(() => {})
      await backend.close()
    })
}
