// Workload 1, contention: P processes, each sending N status reports for its own job of one plan, as
// fast as it can. Throughput, latency per report (call to durable), lost updates. concord runs twice:
// "concord" with no orchestrator (each process writes to the store), and "concord-endpoint" with the
// plan's local endpoint served by a process of its own, as `concord run` serves it while it runs the
// plan (every process's report goes through it). Its CPU counts in the CPU per report, and is also
// given alone: it serves every report from one thread, so it bounds the throughput by itself.
import { rmSync } from "node:fs"
import { startWorker, startWorkers, stopAll, tempDir } from "../lib/proc.mjs"
import { median, p99, quantile, round } from "../lib/stats.mjs"

export const id = "contention"

export function config(quick) {
  return quick
    ? { ps: [1, 4], n: 10, reps: 1 }
    : { ps: (process.env.BENCH_PS ?? "1,4,16,32").split(",").map(Number), n: 50, reps: Number(process.env.BENCH_REPS ?? 3) }
}

async function once(variant, P, n) {
  const dir = tempDir()
  const backend = variant === "concord-endpoint" ? "concord" : variant
  const first = await startWorker(backend, dir, variant === "concord-endpoint" ? { as: "run" } : undefined)
  const workers = [first]
  const host = variant === "concord-endpoint" ? first : undefined
  try {
    const jobs = Array.from({ length: P }, (_, i) => `j${i}`)
    const plan = await first.call("createPlan", { name: "contention", jobs })
    if (host) await host.call("serveEndpoint", { plan })
    const senders = host ? [] : [first]
    senders.push(...(await startWorkers(P - senders.length, backend, dir)))
    workers.push(...senders.filter(w => w !== first))
    // every worker is up and has its store open: start them together
    const hostCpu0 = host ? (await host.call("cpu")).cpuMs : 0
    const runs = await Promise.all(senders.map((w, i) => w.call("burst", { plan, job: jobs[i], n })))
    const endpointCpuMs = host ? (await host.call("cpu")).cpuMs - hostCpu0 : 0
    if (variant === "concord-endpoint") {
      const through = runs.reduce((a, r) => a + (r.via?.endpoint ?? 0), 0)
      if (through !== P * n) throw new Error(`concord-endpoint: only ${through} of ${P * n} reports went through the endpoint`)
    }
    const final = await first.call("read", { plan })
    let lost = 0
    for (const job of jobs) {
      const have = new Set(final.jobs[job]?.messages ?? [])
      for (let i = 0; i < n; i++) if (!have.has(`${job}-${i}`)) lost++
    }
    const start = Math.min(...runs.map(r => r.start))
    const end = Math.max(...runs.map(r => r.end))
    return {
      lat: runs.flatMap(r => r.lat),
      seconds: (end - start) / 1000,
      reports: P * n,
      lost,
      cpuMsPerReport: (runs.reduce((a, r) => a + r.cpuMs, 0) + endpointCpuMs) / (P * n),
      ...(host ? { endpointCpuMsPerReport: endpointCpuMs / (P * n) } : {}),
    }
  } finally {
    await stopAll(workers)
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function run({ backends, quick, log }) {
  const cfg = config(quick)
  const raw = {}
  const variants = backends.flatMap(b => (b === "concord" ? ["concord", "concord-endpoint"] : [b]))
  for (let rep = 0; rep < cfg.reps; rep++) {
    for (const P of cfg.ps) {
      for (const b of variants) {
        const r = await once(b, P, cfg.n)
        const key = `${b}|${P}`
        ;(raw[key] ??= []).push(r)
        log(
          `contention ${b} P=${P} rep ${rep + 1}/${cfg.reps}: ${round(r.reports / r.seconds, 0)} reports/s, ` +
            `p50 ${round(median(r.lat))} ms, p99 ${round(p99(r.lat))} ms, lost ${r.lost}/${r.reports}, CPU ${round(r.cpuMsPerReport)} ms/report` +
            (r.endpointCpuMsPerReport !== undefined ? ` (endpoint ${round(r.endpointCpuMsPerReport)})` : "")
        )
      }
    }
  }
  const rows = []
  for (const b of variants) {
    for (const P of cfg.ps) {
      const rs = raw[`${b}|${P}`]
      const lat = rs.flatMap(r => r.lat)
      const thr = rs.map(r => r.reports / r.seconds)
      rows.push({
        backend: b,
        P,
        reportsPerRep: P * cfg.n,
        reps: rs.length,
        throughput: median(thr),
        throughputRuns: thr,
        p50: median(lat),
        p90: quantile(lat, 0.9),
        p99: p99(lat),
        max: Math.max(...lat),
        lost: rs.reduce((a, r) => a + r.lost, 0),
        sent: rs.reduce((a, r) => a + r.reports, 0),
        cpuMsPerReport: median(rs.map(r => r.cpuMsPerReport)),
        ...(b === "concord-endpoint" ? { endpointCpuMsPerReport: median(rs.map(r => r.endpointCpuMsPerReport)) } : {}),
      })
    }
  }
  return { config: cfg, rows }
}
