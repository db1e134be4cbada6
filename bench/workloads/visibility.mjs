// Workload 3, visibility: a writer process makes reports durable one at a time; a long-running watcher
// process (the orchestrator's view) records when it first sees each. Latency = seen - durable, both
// from the machine's clock (performance.timeOrigin + performance.now() in each process).
//
// "Ways" are how a watcher can follow a plan: "store watch" for every backend (concord: DocStore.watch;
// json: fs.watch on the directory + poll; sqlite: fs.watch on the directory + query), and, for concord,
// "local endpoint": the writer's reports go through the plan's local endpoint (served by a third
// process, as `concord run` serves it) while the watcher watches the store; and the sync server
// (src/sync/net, through ../lib/net.mjs): a watcher holding a live session to `concord serve`, and a
// second store kept in sync by `concord sync --watch` and watched like the first.
import { rmSync } from "node:fs"
import { startWorker, stopAll, sleep, tempDir } from "../lib/proc.mjs"
import { latencies, median, p99, quantile } from "../lib/stats.mjs"
import { netStatus } from "../lib/net.mjs"

export const id = "visibility"

export function config(quick) {
  return { reports: quick ? 20 : 150, gapMs: 40, jitterMs: 60, pollMs: 500 }
}

async function storeWatch(backend, cfg, viaEndpoint = false) {
  const dir = tempDir()
  const writer = await startWorker(backend, dir)
  const watcher = await startWorker(backend, dir)
  const host = viaEndpoint ? await startWorker(backend, dir, { as: "run" }) : undefined
  try {
    const plan = await writer.call("createPlan", { name: "visibility", jobs: ["j0"] })
    if (host) await host.call("serveEndpoint", { plan })
    await watcher.call("watch", { plan, job: "j0", key: "w", pollMs: cfg.pollMs })
    await sleep(500) // let the watcher set up and settle
    const { durable, via } = await writer.call("paced", { plan, job: "j0", n: cfg.reports, gapMs: cfg.gapMs, jitterMs: cfg.jitterMs })
    if (host && via.endpoint !== cfg.reports)
      throw new Error(`visibility local endpoint: only ${via.endpoint ?? 0} of ${cfg.reports} reports went through the endpoint`)
    // give the watcher time to see the last one (it has at least one poll interval)
    await sleep(cfg.pollMs * 3)
    const { seen } = await watcher.call("unwatch", { key: "w" })
    const { lat, missed } = latencies(durable, seen)
    return { lat, missed }
  } finally {
    await stopAll([writer, watcher, ...(host ? [host] : [])])
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function run({ backends, quick, log }) {
  const cfg = config(quick)
  const rows = []
  const ways = backends.flatMap(b => [[b, "store watch"], ...(b === "concord" ? [[b, "local endpoint"]] : [])])
  for (const [b, way] of ways) {
    const { lat, missed } = await storeWatch(b, cfg, way === "local endpoint")
    const row = {
      backend: b,
      way,
      n: lat.length,
      missed,
      p50: median(lat),
      p90: quantile(lat, 0.9),
      p99: p99(lat),
      max: lat.length ? Math.max(...lat) : null,
      min: lat.length ? Math.min(...lat) : null,
    }
    rows.push(row)
    log(`visibility ${b} ${way}: p50 ${row.p50?.toFixed(1)} ms, p99 ${row.p99?.toFixed(1)} ms, missed ${missed}/${cfg.reports}`)
  }
  const net = await netStatus()
  if (backends.includes("concord")) {
    for (const [way, measure] of Object.entries(net.visibility ?? {})) {
      const { lat, missed, firstSeenBy } = await measure(cfg)
      const row = {
        backend: "concord",
        way,
        n: lat.length,
        missed,
        firstSeenBy,
        p50: median(lat),
        p90: quantile(lat, 0.9),
        p99: p99(lat),
        max: lat.length ? Math.max(...lat) : null,
        min: lat.length ? Math.min(...lat) : null,
      }
      rows.push(row)
      log(`visibility concord ${way}: p50 ${row.p50?.toFixed(1)} ms, p99 ${row.p99?.toFixed(1)} ms, missed ${missed}/${cfg.reports}`)
    }
    if (!net.available) {
      rows.push({ backend: "concord", way: "sync server", pending: net.reason })
      log(`visibility concord sync server: pending (${net.reason})`)
    }
  }
  return { config: cfg, rows }
}
