/** Drive `concord mcp` in a real child process with the MCP SDK's own client over stdio. */
import { readdirSync, statSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { getDefaultEnvironment, StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { afterAll } from "vitest"
import { BIN, cleanup } from "../helpers/cli.js"

export interface ToolResult {
  isError?: boolean
  content: { type: string; text: string }[]
  structuredContent?: any
}

export interface Mcp {
  client: Client
  call(name: string, args?: Record<string, unknown>): Promise<ToolResult>
  stderr(): string
  close(): Promise<void>
}

/**
 * `concord mcp ARGS` with the SDK's default environment (HOME, PATH, ... only: no CONCORD_* variables,
 * like Codex), plus `env`, in `cwd` (default: the system temp directory, far from any store).
 */
export async function startMcp(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<Mcp> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, "mcp", ...args],
    cwd: opts.cwd ?? os.tmpdir(),
    env: { ...getDefaultEnvironment(), ...opts.env },
    stderr: "pipe",
  })
  let err = ""
  transport.stderr?.on("data", d => (err += d))
  const client = new Client({ name: "concord-test", version: "1.0.0" })
  // Time-outs fit for a loaded 2-core machine shared by several test runs.
  await client.connect(transport, { timeout: 600_000 })
  return {
    client,
    call: async (name, a = {}) => (await client.callTool({ name, arguments: a }, undefined, { timeout: 600_000 })) as ToolResult,
    stderr: () => err,
    close: () => client.close(),
  }
}

/** Every file under a store except derived caches, with its size: "nothing written" compares two of these. */
export function storeFiles(dir: string): Record<string, number> {
  const out: Record<string, number> = {}
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name)
      const rel = path.relative(dir, p)
      if (rel === "cache" || rel.startsWith(`cache${path.sep}`)) continue
      const st = statSync(p)
      if (st.isDirectory()) walk(p)
      else out[rel] = st.size
    }
  }
  walk(dir)
  return out
}

/**
 * For a test file: `mcp(...)` starts a server like startMcp, and every server started and every directory
 * pushed on `dirs` is closed or removed after the file's tests.
 */
export function mcpFixtures(): { dirs: string[]; mcp: (...a: Parameters<typeof startMcp>) => Promise<Mcp> } {
  const dirs: string[] = []
  const clients: Mcp[] = []
  afterAll(async () => {
    await Promise.all(clients.map(c => c.close().catch(() => {})))
    dirs.forEach(cleanup)
  })
  return {
    dirs,
    mcp: async (...a) => {
      const c = await startMcp(...a)
      clients.push(c)
      return c
    },
  }
}

/** A tool result's text. */
export const text = (r: { content: { text: string }[] }) => r.content.map(c => c.text).join("\n")
/** A job of a status (JSON) by name. */
export const job = (s: any, name: string) => s.jobs.find((j: any) => j.name === name)
