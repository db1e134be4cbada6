// Workload 4, report cost: wall time of one `concord report` process (spawn to exit) against the floor,
// `node -e ""`, and against the same report made by a one-shot process of each baseline
// (bench/baselines/cli.mjs). Runs are interleaved so that drift hits every command alike.
import { rmSync } from "node:fs"
import path from "node:path"
import { ROOT } from "../lib/concord.mjs"
import { startWorker, stopAll, tempDir, timeNode } from "../lib/proc.mjs"
import { median, p99, quantile } from "../lib/stats.mjs"

export const id = "report-cost"

export function config(quick) {
  return { runs: quick ? 5 : 40, warmup: 2 }
}

const BIN = path.join(ROOT, "bin/concord.js")
const BASELINE_CLI = path.join(ROOT, "bench/baselines/cli.mjs")

export async function run({ backends, quick, log }) {
  const cfg = config(quick)
  const cmds = [{ name: 'node -e ""', args: ["-e", ""] }]
  const cleanup = []
  const workers = []
  const endpointWorkers = []
  try {
    for (const b of backends) {
      const dir = tempDir()
      cleanup.push(dir)
      const w = await startWorker(b, dir)
      workers.push(w)
      const plan = await w.call("createPlan", { name: "report-cost", jobs: ["j0", "j1"] })
      let i = 0
      if (b === "concord") {
        // start-up alone: the same bundle, loaded, printing its help and exiting
        cmds.push({ name: "concord --help", backend: b, args: [BIN, "--help"], env: { CONCORD_STORE: dir }, cwd: dir })
        cmds.push({
          name: "concord report",
          backend: b,
          args: () => [BIN, "report", "progress", `cost-${i++}`, "--job", "j0", "--plan", plan],
          env: { CONCORD_STORE: dir },
          cwd: dir,
        })
        // the same report while an orchestrator runs the plan: its local endpoint is served (by a worker
        // here, with the function `concord run` serves it with) and the report goes there
        const served = await w.call("createPlan", { name: "report-cost-served", jobs: ["j0"] })
        const server = await startWorker(b, dir, { as: "run" })
        endpointWorkers.push(server)
        await server.call("serveEndpoint", { plan: served })
        cmds.push({
          name: "concord report (orchestrator running)",
          backend: b,
          // as a job of the running plan calls it: concord run gives its jobs these variables
          args: () => [BIN, "report", "progress", `cost-served-${i++}`],
          env: { CONCORD_STORE: dir, CONCORD_PLAN: served, CONCORD_JOB: "j0", CONCORD_ATTEMPT: "1" },
          cwd: dir,
        })
      } else {
        cmds.push({ name: `${b} report`, backend: b, args: () => [BASELINE_CLI, b, dir, "report", plan, "j0", "progress", `cost-${i++}`] })
      }
    }
    await stopAll(workers)
    // the served plan's reports must really go through its endpoint, or the row would be mislabeled
    const check = cmds.find(c => c.name === "concord report (orchestrator running)")
    if (check) {
      const res = await timeNode([...check.args(), "--json"], { env: check.env, cwd: check.cwd })
      const via = res.code === 0 ? JSON.parse(res.stdout).via : `exit ${res.code}: ${res.stderr}`
      if (via !== "endpoint") throw new Error(`concord report with an orchestrator running went through ${via}, not the endpoint`)
    }
    const times = Object.fromEntries(cmds.map(c => [c.name, []]))
    for (let r = 0; r < cfg.warmup + cfg.runs; r++) {
      for (const c of cmds) {
        const res = await timeNode(typeof c.args === "function" ? c.args() : c.args, { env: c.env, cwd: c.cwd })
        if (res.code !== 0) throw new Error(`${c.name} exited ${res.code}: ${res.stderr}`)
        if (r >= cfg.warmup) times[c.name].push(res.ms)
      }
    }
    const rows = cmds.map(c => {
      const t = times[c.name]
      return { command: c.name, backend: c.backend ?? null, n: t.length, p50: median(t), p90: quantile(t, 0.9), p99: p99(t), min: Math.min(...t) }
    })
    for (const row of rows) log(`report cost ${row.command}: p50 ${row.p50.toFixed(1)} ms, p99 ${row.p99.toFixed(1)} ms`)
    // A report through a long-lived MCP server is measured by the mcp workload (bench/workloads/mcp.mjs).
    return { config: cfg, rows }
  } finally {
    await stopAll(endpointWorkers)
    await stopAll(workers)
    for (const d of cleanup) rmSync(d, { recursive: true, force: true })
  }
}
