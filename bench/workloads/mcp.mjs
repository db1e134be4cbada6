// Workload 7, MCP: a job's agent reporting through a long-lived `concord mcp` server (the MCP SDK's own
// client over stdio), call to durable (the tool answers only after the report is fsynced), against a
// `concord report` process and `node -e ""` in the same run, interleaved; and through a running
// orchestrator's endpoint, to a short log and to one already holding 10,000 reports. Then 16 agents, each with
// its own MCP server, reporting at once: lost reports and throughput, against json-lock's 16 processes
// doing the same number of reports in the same run.
import { readFileSync, rmSync } from "node:fs"
import path from "node:path"
import { performance } from "node:perf_hooks"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { ROOT } from "../lib/concord.mjs"
import { startWorker, startWorkers, stopAll, tempDir, timeNode } from "../lib/proc.mjs"
import { median, p99, quantile, round } from "../lib/stats.mjs"

export const id = "mcp"

export function config(quick) {
  return quick ? { calls: 30, cli: 3, agents: 4, n: 5, warmup: 3, longLog: 10_000 } : { calls: 400, cli: 20, agents: 16, n: 40, warmup: 20, longLog: 10_000 }
}

const BIN = path.join(ROOT, "bin/concord.js")

/** CPU ms (user + system) a process has used so far, from /proc (Linux). */
function cpuMs(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8")
    const x = f.slice(f.lastIndexOf(")") + 2).split(" ")
    return ((Number(x[11]) + Number(x[12])) * 1000) / 100
  } catch {
    return null
  }
}

async function startServer(dir, plan, job) {
  // the arguments `concord run` writes into every attempt's MCP configuration: plan, job and attempt
  const args = [BIN, "mcp", "--store", dir, "--plan", plan, "--job", job, "--attempt", "1"]
  const transport = new StdioClientTransport({ command: process.execPath, args, stderr: "pipe" })
  const client = new Client({ name: "concord-bench", version: "1" })
  // Generous time-outs: on a loaded 2-core machine 16 servers starting at once take a while.
  await client.connect(transport, { timeout: 600_000 })
  const vias = []
  return {
    pid: transport.pid,
    vias,
    async report(message, progress) {
      const t0 = performance.now()
      const r = await client.callTool({ name: "mc_report", arguments: { status: "progress", message, progress } }, undefined, { timeout: 600_000 })
      const ms = performance.now() - t0
      if (r.isError) throw new Error(`mc_report refused: ${r.content?.[0]?.text}`)
      vias.push(r.structuredContent?.via)
      return ms
    },
    close: () => client.close(),
  }
}

function stats(t) {
  return { n: t.length, p50: median(t), p90: quantile(t, 0.9), p99: p99(t), min: Math.min(...t), max: Math.max(...t) }
}

export async function run({ backends, quick, log }) {
  const cfg = config(quick)
  const dirs = []
  const workers = []
  const servers = []
  try {
    // --- latency: one long-lived server, against one-shot processes, interleaved
    const dir = tempDir()
    dirs.push(dir)
    const w = await startWorker("concord", dir)
    workers.push(w)
    const plan = await w.call("createPlan", { name: "mcp", jobs: ["j0", "j1"] })
    // a second plan in the same store that an orchestrator runs: its local endpoint is served (by a
    // worker, with the function concord run serves it with), and its agent's mc_report goes there
    const served = await w.call("createPlan", { name: "mcp-served", jobs: ["j0"] })
    // and a third, also run by that orchestrator, whose job has reported all day: its log already holds
    // cfg.longLog reports (crafted: bench/lib/craft.mjs), so a report's cost at a long log is measured
    // in the same run as at a short one
    const long = await w.call("createPlan", { name: "mcp-long-log", jobs: ["j0"] })
    await w.call("craftReports", { plan: long, job: "j0", n: cfg.longLog })
    const endpointWorker = await startWorker("concord", dir, { as: "run" })
    await endpointWorker.call("serveEndpoint", { plan: served })
    await endpointWorker.call("serveEndpoint", { plan: long })
    await stopAll(workers.splice(0))
    workers.push(endpointWorker)
    const s = await startServer(dir, plan, "j0")
    const s2 = await startServer(dir, served, "j0")
    const s3 = await startServer(dir, long, "j0")
    servers.push(s, s2, s3)
    for (let i = 0; i < cfg.warmup; i++) {
      await s.report(`warm-${i}`, i % 101)
      await s2.report(`warm-${i}`, i % 101)
      await s3.report(`warm-${i}`, i % 101)
    }
    const mcpT = []
    const epT = []
    const longT = []
    const cliT = []
    const nodeT = []
    let cpuCalls = 0
    let cpuSpent = 0
    const every = Math.max(1, Math.floor(cfg.calls / cfg.cli))
    for (let i = 0; i < cfg.calls; i++) {
      const c0 = cpuMs(s.pid)
      mcpT.push(await s.report(`mcp-${i}`, i % 101))
      const c1 = cpuMs(s.pid)
      if (c0 !== null && c1 !== null) (cpuSpent += c1 - c0), cpuCalls++
      epT.push(await s2.report(`mcp-${i}`, i % 101))
      longT.push(await s3.report(`mcp-${i}`, i % 101))
      if (i % every === 0 && cliT.length < cfg.cli) {
        const r = await timeNode([BIN, "report", "progress", `cli-${i}`, "--job", "j1", "--plan", plan], { env: { CONCORD_STORE: dir }, cwd: dir })
        if (r.code !== 0) throw new Error(`concord report exited ${r.code}: ${r.stderr}`)
        cliT.push(r.ms)
        nodeT.push((await timeNode(["-e", ""])).ms)
      }
    }
    if (s.vias.some(v => v !== "store") || [...s2.vias, ...s3.vias].some(v => v !== "endpoint"))
      throw new Error("mcp latency: a report did not go the way its row says")
    const rows = [
      { command: "mc_report via concord mcp (long-lived)", ...stats(mcpT), cpuMsPerCall: cpuCalls ? cpuSpent / cpuCalls : null },
      { command: "mc_report via concord mcp, orchestrator running (its local endpoint)", ...stats(epT) },
      { command: `mc_report the same way, to a log already holding ${cfg.longLog.toLocaleString("en")} reports`, ...stats(longT) },
      { command: "concord report (one process)", ...stats(cliT) },
      { command: 'node -e ""', ...stats(nodeT) },
    ]
    for (const r of rows)
      log(
        `mcp latency ${r.command}: p50 ${round(r.p50)} ms, p99 ${round(r.p99)} ms (n = ${r.n})${r.cpuMsPerCall != null ? `, server CPU ${round(r.cpuMsPerCall)} ms/report` : ""}`
      )
    // nothing lost: every report made through the server is in the log
    const w2 = await startWorker("concord", dir)
    workers.push(w2)
    const read = await w2.call("read", { plan })
    const have = new Set(read.jobs.j0?.messages ?? [])
    let lost = 0
    for (let i = 0; i < cfg.calls; i++) if (!have.has(`mcp-${i}`)) lost++
    const haveServed = new Set((await w2.call("read", { plan: served })).jobs.j0?.messages ?? [])
    for (let i = 0; i < cfg.calls; i++) if (!haveServed.has(`mcp-${i}`)) lost++
    const haveLong = (await w2.call("read", { plan: long })).jobs.j0?.messages ?? []
    if (haveLong.length !== cfg.longLog + cfg.warmup + cfg.calls)
      throw new Error(`mcp long log: ${haveLong.length} reports, expected ${cfg.longLog + cfg.warmup + cfg.calls}`)
    const longSet = new Set(haveLong)
    for (let i = 0; i < cfg.calls; i++) if (!longSet.has(`mcp-${i}`)) lost++
    await stopAll(workers.splice(0))
    await Promise.all(servers.splice(0).map(x => x.close()))

    // --- 16 agents, each with its own MCP server, all reporting at once: with no orchestrator (each
    // server writes to the store), and while an orchestrator runs the plan (its local endpoint served by
    // a worker, as concord run serves it: every mc_report goes through it)
    const fleet = {}
    for (const withEndpoint of [false, true]) {
      const d = tempDir()
      dirs.push(d)
      const first = await startWorker("concord", d, withEndpoint ? { as: "run" } : undefined)
      workers.push(first)
      const jobs = Array.from({ length: cfg.agents }, (_, i) => `j${i}`)
      const p = await first.call("createPlan", { name: "mcp-fleet", jobs })
      if (withEndpoint) await first.call("serveEndpoint", { plan: p })
      const ss = await Promise.all(jobs.map(j => startServer(d, p, j)))
      servers.push(...ss)
      await Promise.all(ss.map((x, i) => x.report(`warm-${jobs[i]}`, 0)))
      const t0 = performance.now()
      const lat = (
        await Promise.all(
          ss.map(async (x, k) => {
            const out = []
            for (let i = 0; i < cfg.n; i++) out.push(await x.report(`${jobs[k]}-${i}`, i % 101))
            return out
          })
        )
      ).flat()
      const seconds = (performance.now() - t0) / 1000
      const vias = ss.flatMap(x => x.vias)
      const want = withEndpoint ? "endpoint" : "store"
      if (vias.some(v => v !== want)) throw new Error(`mcp fleet: reports went through ${[...new Set(vias)].join(", ")}, expected ${want} only`)
      const fin = await first.call("read", { plan: p })
      let flost = 0
      for (const j of jobs) {
        const h = new Set(fin.jobs[j]?.messages ?? [])
        for (let i = 0; i < cfg.n; i++) if (!h.has(`${j}-${i}`)) flost++
      }
      const key = withEndpoint ? "concord-endpoint" : "concord"
      const label = withEndpoint
        ? `concord (${cfg.agents} MCP servers, orchestrator running: its local endpoint)`
        : `concord (${cfg.agents} MCP servers, no orchestrator: each writes to the store)`
      fleet[key] = {
        backend: label,
        variant: key,
        reports: cfg.agents * cfg.n,
        seconds,
        throughput: (cfg.agents * cfg.n) / seconds,
        p50: median(lat),
        p99: p99(lat),
        lost: flost,
      }
      await Promise.all(servers.splice(0).map(x => x.close()))
      await stopAll(workers.splice(0))
    }
    if (backends.includes("json-lock")) {
      const d = tempDir()
      dirs.push(d)
      const first = await startWorker("json-lock", d)
      const jobs = Array.from({ length: cfg.agents }, (_, i) => `j${i}`)
      const p = await first.call("createPlan", { name: "mcp-fleet", jobs })
      const ws = [first, ...(await startWorkers(cfg.agents - 1, "json-lock", d))]
      workers.push(...ws)
      const runs = await Promise.all(ws.map((x, i) => x.call("burst", { plan: p, job: jobs[i], n: cfg.n })))
      const seconds = (Math.max(...runs.map(r => r.end)) - Math.min(...runs.map(r => r.start))) / 1000
      const fin = await first.call("read", { plan: p })
      let jlost = 0
      for (const j of jobs) {
        const h = new Set(fin.jobs[j]?.messages ?? [])
        for (let i = 0; i < cfg.n; i++) if (!h.has(`${j}-${i}`)) jlost++
      }
      const lat = runs.flatMap(r => r.lat)
      fleet["json-lock"] = {
        backend: `json-lock (${cfg.agents} processes)`,
        variant: "json-lock",
        reports: cfg.agents * cfg.n,
        seconds,
        throughput: (cfg.agents * cfg.n) / seconds,
        p50: median(lat),
        p99: p99(lat),
        lost: jlost,
      }
      await stopAll(workers.splice(0))
    }
    for (const f of Object.values(fleet))
      log(`mcp fleet ${f.backend}: ${round(f.throughput, 0)} reports/s, p50 ${round(f.p50)} ms, p99 ${round(f.p99)} ms, lost ${f.lost}/${f.reports}`)
    return { config: cfg, rows, lost, fleet: Object.values(fleet) }
  } finally {
    await Promise.all(servers.map(x => x.close().catch(() => {})))
    await stopAll(workers)
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  }
}
