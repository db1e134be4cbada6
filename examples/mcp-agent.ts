/**
 * A stand-in for an AI coding agent that talks to concord over MCP, as Claude Code or Codex would: it
 * reads the MCP configuration `concord run` wrote for its job ($CONCORD_MCP_CONFIG, the `mcpServers`
 * JSON), starts that server with the official SDK client (which passes the server only a minimal
 * environment, like Codex), reads its own job with `mc_status`, reports progress with `mc_report`, and
 * finishes.
 *   node mcp-agent.js [STEPS] [complete|fail]
 */
import { readFileSync } from "node:fs"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"

const steps = Number(process.argv[2] ?? 3)
const outcome = process.argv[3] ?? "complete"
const configFile = process.env.CONCORD_MCP_CONFIG
if (!configFile) {
  process.stderr.write("mcp-agent: no $CONCORD_MCP_CONFIG: run me as a job of `concord run`\n")
  process.exit(2)
}
const { command, args } = JSON.parse(readFileSync(configFile, "utf8")).mcpServers.concord as { command: string; args: string[] }
const client = new Client({ name: "concord-example-agent", version: "1.0.0" })
await client.connect(new StdioClientTransport({ command, args, stderr: "inherit" }))

type Text = { content: { type: string; text: string }[]; isError?: boolean; structuredContent?: Record<string, unknown> }
async function call(name: string, args: Record<string, unknown>): Promise<Text> {
  const r = (await client.callTool({ name, arguments: args })) as Text
  if (r.isError) throw new Error(`${name}: ${r.content[0]?.text}`)
  return r
}

const me = (await call("mc_status", { name: process.env.CONCORD_JOB ?? "" }).catch(() => undefined))?.structuredContent?.job as { name: string } | undefined
const name = me?.name ?? "?"
console.log(`[${name}] connected to concord over MCP; tools: ${(await client.listTools()).tools.map(t => t.name).join(", ")}`)
for (let i = 1; i <= steps; i++) {
  await new Promise(r => setTimeout(r, 300))
  const r = await call("mc_report", { status: "progress", message: `step ${i} of ${steps}`, progress: Math.round((i * 90) / steps) })
  console.log(`[${name}] ${r.content[0].text}`)
}
const end =
  outcome === "fail"
    ? await call("mc_report", { status: "failed", message: "could not finish" })
    : await call("mc_report", { status: "completed", message: "done", progress: 100 })
console.log(`[${name}] ${end.content[0].text}`)
await client.close()
