/**
 * The MCP configurations `concord run` writes for every job attempt: each one (Claude Code / Cursor /
 * Gemini JSON, Codex TOML and its `-c` override, OpenCode JSON) starts a server that is that job, with
 * the MCP SDK client's minimal environment and from an unrelated working directory.
 */
import { existsSync, readFileSync } from "node:fs"
import path from "node:path"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { afterAll, describe, expect, it } from "vitest"
import { renderMcpConfigs } from "../../src/mcp/config.js"
import { cleanup, concord, createPlan, statusJson, tempDir } from "../helpers/cli.js"
import { spawnConcord } from "../sync/net/helpers.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))

/** Read Codex's `[mcp_servers.concord]` table or `-c` value: TOML basic strings written with JSON escapes. */
function codexServer(toml: string): { command: string; args: string[] } {
  const command = /command = ("(?:[^"\\]|\\.)*")/.exec(toml)
  const args = /args = (\[.*\])/.exec(toml)
  expect(command && args, toml).toBeTruthy()
  return { command: JSON.parse(command![1]), args: JSON.parse(args![1]) }
}

async function reportThrough(cmd: { command: string; args: string[] }, message: string) {
  const client = new Client({ name: "config-test", version: "1" })
  await client.connect(new StdioClientTransport({ ...cmd, env: getDefaultEnvironment(), cwd: "/", stderr: "pipe" }), { timeout: 600_000 })
  try {
    const r = (await client.callTool({ name: "mc_report", arguments: { status: "working", message } }, undefined, { timeout: 600_000 })) as any
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy()
    return r.structuredContent
  } finally {
    await client.close()
  }
}

describe("per-attempt MCP configuration", () => {
  it("renders every format from one command line, quoting paths with spaces, quotes and backslashes", () => {
    const cmd = { command: "/opt/my node/node", args: ["/x/bin/concord.js", "mcp", "--store", '/tmp/a "b" \\c', "--plan", "P", "--job", "j", "--attempt", "2"] }
    const r = renderMcpConfigs(cmd)
    expect(JSON.parse(r.json)).toEqual({ mcpServers: { concord: cmd } })
    expect(JSON.parse(r.opencode).mcp.concord).toEqual({ type: "local", command: [cmd.command, ...cmd.args], enabled: true })
    expect(r.codex.split("\n")[0]).toBe("[mcp_servers.concord]")
    expect(codexServer(r.codex)).toEqual(cmd)
    expect(r.codexOverride.startsWith("mcp_servers.concord={ command = ")).toBe(true)
    expect(codexServer(r.codexOverride)).toEqual(cmd)
  })

  it("concord run writes them for each attempt and points the job at them; each one starts a server that is that job", async () => {
    const dir = tempDir("concord-mcp-config-")
    dirs.push(dir)
    const id = await createPlan(dir, `name: cfg\njobs:\n  - name: a\n    run: 'env | grep ^CONCORD_MCP_ | sort > mcp-env.txt; sleep 60'\n`)
    const run = spawnConcord(dir, ["run", id], { timeoutMs: 600_000 })
    try {
      const envFile = path.join(dir, "mcp-env.txt")
      const end = Date.now() + 300_000
      while (!(existsSync(envFile) && readFileSync(envFile, "utf8").includes("CONCORD_MCP_OPENCODE"))) {
        if (Date.now() > end) throw new Error("the job never wrote its environment")
        await new Promise(r => setTimeout(r, 100))
      }
      const env = Object.fromEntries(
        readFileSync(envFile, "utf8")
          .trim()
          .split("\n")
          .map(l => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)])
      )
      const base = path.join(dir, "logs", id, "a.1")
      expect(env).toEqual({
        CONCORD_MCP_CONFIG: `${base}.mcp.json`,
        CONCORD_MCP_CODEX: `${base}.codex.toml`,
        CONCORD_MCP_CODEX_OVERRIDE: expect.stringMatching(/^mcp_servers\.concord=\{ command = /),
        CONCORD_MCP_OPENCODE: `${base}.opencode.json`,
      })
      const claude = JSON.parse(readFileSync(env.CONCORD_MCP_CONFIG, "utf8")).mcpServers.concord
      expect(claude.args).toEqual(expect.arrayContaining(["mcp", "--store", dir, "--plan", id, "--job", "a", "--attempt", "1"]))
      const [command, ...args] = JSON.parse(readFileSync(env.CONCORD_MCP_OPENCODE, "utf8")).mcp.concord.command
      const servers = {
        json: claude,
        codex: codexServer(readFileSync(env.CONCORD_MCP_CODEX, "utf8")),
        "codex -c": codexServer(env.CONCORD_MCP_CODEX_OVERRIDE),
        opencode: { command, args },
      }
      for (const [kind, cmd] of Object.entries(servers)) {
        const t0 = Date.now()
        const r = await reportThrough(cmd, `via ${kind}`)
        if (process.env.CONCORD_TEST_VERBOSE) console.log(`${kind}: ${Date.now() - t0} ms`)
        expect(r).toMatchObject({ planId: id, job: "a", attempt: 1 })
      }
      const s = await statusJson(dir, id)
      expect(s.jobs[0].lastReport.message).toBe("via opencode")
      const history = JSON.parse((await concord(dir, ["history", id, "--json"])).stdout) as { by: string; did: string }[]
      expect(history.filter(e => /^job:a#1@/.test(e.by) && /report working/.test(e.did))).toHaveLength(4)
    } finally {
      run.child.kill("SIGTERM")
      await run.done
      await concord(dir, ["cancel", id])
    }
  }, 900_000)
})
