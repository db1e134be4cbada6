/**
 * `npm start`: a one-minute demo of the founding bug, fixed. Creates a plan of four fake agents in the
 * default store (./.concord), runs it with a live status view, and ends paused at on_error with one job
 * failed and the three completions that raced the failure all kept.
 */
import { spawnSync } from "node:child_process"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const bin = path.join(root, "bin", "concord.js")
const planFile = path.join(root, "examples", "demo.yaml")
const env = { ...process.env, CONCORD_STORE: process.env.CONCORD_STORE ?? path.join(root, ".concord") }

function concord(args: string[], opts: { capture?: boolean; extraEnv?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd: root,
    env: { ...env, ...opts.extraEnv },
    stdio: opts.capture ? ["ignore", "pipe", "inherit"] : "inherit",
    encoding: "utf8",
  })
  return { code: r.status ?? 1, stdout: r.stdout ?? "" }
}

const say = (s = "") => process.stdout.write(`${s}\n`)
say("concord demo: four agents work on one plan.")
say("  schema -> api   (api waits for schema)")
say("  docs, lint      (independent)")
say("At one moment, lint fails while api and docs report completed. A JSON-file plan loses those")
say("completions; concord merges every write, so the plan pauses at on_error with all three kept.")
say()

const created = concord(["plan", "create", planFile, "--json"], { capture: true })
if (created.code !== 0) process.exit(created.code)
const { id } = JSON.parse(created.stdout) as { id: string }
say(`store: ${env.CONCORD_STORE}`)
say(`plan:  ${id}`)
say()

// The agents finish together a few seconds from now.
const run = concord(["run", id, "--live"], { extraEnv: { DEMO_AT: String(Date.now() + 6000) } })

const status = JSON.parse(concord(["status", id, "--json"], { capture: true }).stdout)
const counts = status.counts as Record<string, number>
const ok = run.code === 3 && status.checkpoint === "on_error" && counts.failed === 1 && counts.completed === 3
say()
say(ok ? "As expected: 1 failed, 3 completed, plan paused at on_error. No update was lost." : "Unexpected outcome: see the status above.")
say(`Inspect:  concord status ${id}   |   concord history ${id}`)
say(`Retry:    concord approve ${id} --retry lint && concord run ${id}`)
say("(concord is bin/concord.js: put it on your PATH with  npm run build && npm link  , see README)")
if (!ok) process.exit(1)

// Part two: agents that report over MCP. Each job runs examples/mcp-agent.ts, which starts the MCP
// server `concord run` configured for it ($CONCORD_MCP_CONFIG) with the SDK client and calls mc_report.
say()
say("Part two: two agents report through concord's MCP server (mc_report), as Claude Code or Codex would.")
const mcpPlan = concord(["plan", "create", path.join(root, "examples", "mcp-demo.yaml"), "--json"], { capture: true })
if (mcpPlan.code !== 0) process.exit(mcpPlan.code)
const mcpId = (JSON.parse(mcpPlan.stdout) as { id: string }).id
const mcpRun = concord(["run", mcpId])
const mcpStatus = JSON.parse(concord(["status", mcpId, "--json"], { capture: true }).stdout)
const viaMcp = mcpStatus.jobs.every(
  (j: { status: string; lastReport: { by: string } | null }) => j.status === "completed" && /^job:/.test(j.lastReport?.by ?? "")
)
say()
say(viaMcp && mcpRun.code === 0 ? "As expected: both agents reported completed through MCP." : "Unexpected outcome of the MCP demo: see the status above.")
process.exit(viaMcp && mcpRun.code === 0 ? 0 : 1)
