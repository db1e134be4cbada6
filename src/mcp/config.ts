/**
 * Ready MCP client configurations for one job attempt, so an agent CLI started by `concord run` reaches
 * concord's MCP server as that job with no reliance on its working directory or on inherited
 * environment variables (Codex passes only a whitelist of variables to MCP servers): the server's
 * command line itself carries the store, plan, job and attempt.
 *
 * Written next to the attempt's log (`<store>/logs/<plan>/<job>.<attempt>.*`):
 *  - `.mcp.json`      `{"mcpServers": {"concord": {command, args}}}`: Claude Code (`--mcp-config`),
 *                     Cursor (`.cursor/mcp.json`), Gemini CLI (`settings.json`) all read this shape;
 *  - `.codex.toml`    a `[mcp_servers.concord]` table for Codex's `config.toml`;
 *  - `.opencode.json` OpenCode's `{"mcp": {"concord": {type: "local", command: [...]}}}` (`OPENCODE_CONFIG`).
 * The job gets their paths as $CONCORD_MCP_CONFIG, $CONCORD_MCP_CODEX and $CONCORD_MCP_OPENCODE, and Codex's
 * one-flag form as $CONCORD_MCP_CODEX_OVERRIDE (`codex exec -c "$CONCORD_MCP_CODEX_OVERRIDE" ...`: Codex has no
 * flag that reads a server configuration file, but `-c key=value` takes a TOML value).
 */
import { existsSync } from "node:fs"
import path from "node:path"
import { writeFileAtomic } from "../sync/storage/atomic.js"

/** The name under which concord's server appears to clients: tools show up as `mcp__concord__mc_report`. */
export const MCP_SERVER_NAME = "concord"

export interface JobIdentity {
  storeDir: string
  planId: string
  job: string
  attempt: number
}

/** How to start `concord mcp`: node and the absolute bin/concord.js when known, else `concord` on PATH. */
function mcpCommand(id: JobIdentity, binDir?: string): { command: string; args: string[] } {
  const flags = ["mcp", "--store", id.storeDir, "--plan", id.planId, "--job", id.job, "--attempt", String(id.attempt)]
  const script = binDir ? path.join(binDir, "concord.js") : undefined
  if (script && existsSync(script)) return { command: process.execPath, args: [script, ...flags] }
  return { command: "concord", args: flags }
}

export interface McpConfigs {
  /** JSON `mcpServers` (Claude Code, Cursor, Gemini CLI) */
  json: string
  codex: string
  opencode: string
}

/** The three configurations as text (pure). */
export function renderMcpConfigs(cmd: { command: string; args: string[] }): { json: string; codex: string; opencode: string; codexOverride: string } {
  const json = `${JSON.stringify({ mcpServers: { [MCP_SERVER_NAME]: { command: cmd.command, args: cmd.args } } }, null, 2)}\n`
  // TOML basic strings accept JSON string escapes for everything JSON.stringify emits.
  const q = (s: string) => JSON.stringify(s)
  const codex = `[mcp_servers.${MCP_SERVER_NAME}]\ncommand = ${q(cmd.command)}\nargs = [${cmd.args.map(q).join(", ")}]\n`
  const opencode = `${JSON.stringify(
    { $schema: "https://opencode.ai/config.json", mcp: { [MCP_SERVER_NAME]: { type: "local", command: [cmd.command, ...cmd.args], enabled: true } } },
    null,
    2
  )}\n`
  const codexOverride = `mcp_servers.${MCP_SERVER_NAME}={ command = ${q(cmd.command)}, args = [${cmd.args.map(q).join(", ")}] }`
  return { json, codex, opencode, codexOverride }
}

/**
 * Write the attempt's configurations (next to its log) and return the environment variables that point
 * the job at them.
 */
export async function writeMcpConfigs(id: JobIdentity, binDir?: string): Promise<Record<string, string>> {
  const base = path.join(id.storeDir, "logs", id.planId, `${id.job}.${id.attempt}`)
  const text = renderMcpConfigs(mcpCommand(id, binDir))
  const files: McpConfigs = { json: `${base}.mcp.json`, codex: `${base}.codex.toml`, opencode: `${base}.opencode.json` }
  // next to the job's log, in the store: never creating the store again if it is gone
  const opts = { durable: false, root: path.resolve(id.storeDir) }
  await Promise.all([
    writeFileAtomic(files.json, text.json, opts),
    writeFileAtomic(files.codex, text.codex, opts),
    writeFileAtomic(files.opencode, text.opencode, opts),
  ])
  return {
    CONCORD_MCP_CONFIG: files.json,
    CONCORD_MCP_CODEX: files.codex,
    CONCORD_MCP_OPENCODE: files.opencode,
    CONCORD_MCP_CODEX_OVERRIDE: text.codexOverride,
  }
}
