#!/usr/bin/env node
// What one report costs the orchestrator's endpoint at a given length of the job's report log: the
// endpoint's report handler (src/ops/endpoint.ts: plan check, append, durable write) over a live store
// opened as serveEndpoint opens it, on a log that already holds N reports (crafted with
// bench/lib/craft.mjs, as the scale workload does). Two stores, copies of one: reports appended in place
// (the default) and with Automerge.change (appendInPlace: false, the path before), one report to each in
// turn, the order alternating, so both see the same machine. Per report: CPU of this process (user +
// system, fsyncs included) and wall time: medians, and the CPU's mean (which holds the compactions).
//   node bench/append-cost.mjs [--sizes=400,10000,30000] [--reports=200] [--dist=/path/to/other/dist/src]
//                              [--only="in place"|A.change]
// --dist adds a third variant: another build's store (e.g. the main branch's dist/src), same harness.
// Needs npm run build. Not part of bench/run.mjs (no results.json, no BENCHMARKS.md).
import { cp, mkdtemp, rm } from "node:fs/promises"
import os from "node:os"
import path from "node:path"
import { performance } from "node:perf_hooks"
import { DIST, ROOT } from "./lib/concord.mjs"
import { reportLog } from "./lib/craft.mjs"
import { mean, median, quantile, round } from "./lib/stats.mjs"

const arg = (name, dflt) => process.argv.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt
const sizes = arg("sizes", "400,10000,30000").split(",").map(Number)
const R = Number(arg("reports", "200"))
const other = arg("dist", undefined)
const only = arg("only", undefined) // "in place" or "A.change": one variant alone (for a profile)

const A = await import("@automerge/automerge")
const c = await import(DIST)
const { endpointHandlers } = await import(path.join(ROOT, "dist/src/ops/endpoint.js"))
const { LocalBackend } = await import(path.join(ROOT, "dist/src/ops/local.js"))
const variants = [
  { name: "in place", lib: { ...c, LocalBackend, endpointHandlers }, opts: {} },
  { name: "A.change", lib: { ...c, LocalBackend, endpointHandlers }, opts: { appendInPlace: false } },
]
if (only) variants.splice(0, variants.length, ...variants.filter(v => v.name === only))
if (other) {
  const o = await import(path.join(other, "index.js"))
  const oe = await import(path.join(other, "ops/endpoint.js"))
  const ol = await import(path.join(other, "ops/local.js"))
  variants.push({ name: `other build (${other})`, lib: { ...o, LocalBackend: ol.LocalBackend, endpointHandlers: oe.endpointHandlers }, opts: {} })
}

const cpuNow = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

for (const n of sizes) {
  const root = await mkdtemp(path.join(os.tmpdir(), "concord-append-cost-"))
  try {
    const seed = path.join(root, "seed")
    const setup = new c.PlanStore(seed, { create: true })
    const { id: plan } = await setup.createPlan(c.validatePlanSpec({ name: "append-cost", jobs: [{ name: "j0", run: "true" }] }), seed, {
      by: "user@bench",
      now: Date.now(),
    })
    await setup.updatePlan(plan, doc =>
      c.setJobStatus(doc, "j0", "running", { pid: 1000, startedAt: Date.now() }, { by: "orchestrator@bench:1", now: Date.now() })
    )
    const log = reportLog(A, c, plan, "j0", { actor: "ab".repeat(16) })
    const fields = []
    for (let i = 0; i < n; i++)
      fields.push({ status: "progress", message: `step ${i}: editing src/module-${i % 50}.ts`, progress: i % 101, by: "job:j0#1@bench:1" })
    log.append(fields)
    await setup.docs.save(c.reportDocId(plan, "j0"), log.doc)
    const runs = []
    for (const [k, v] of variants.entries()) {
      const dir = path.join(root, `v${k}`)
      await cp(seed, dir, { recursive: true })
      const backend = new v.lib.LocalBackend(new v.lib.PlanStore(dir, { live: true, groupWrites: true, onWarning: () => {}, ...v.opts }))
      const h = v.lib.endpointHandlers(backend, plan)
      const send = i => h.report({ job: "j0", status: "progress", message: `live ${i}`, progress: Math.abs(i) % 101, attempt: 1 }, "job:j0#1@bench:2")
      for (let i = 0; i < 20; i++) await send(-1 - i) // warm: the log loaded, the code hot
      runs.push({ v, backend, send, cpu: [], wall: [] })
    }
    for (let i = 0; i < R; i++) {
      const order = i % 2 === 0 ? runs : [...runs].reverse()
      for (const r of order) {
        const c0 = cpuNow()
        const t0 = performance.now()
        await r.send(i)
        r.wall.push(performance.now() - t0)
        r.cpu.push(cpuNow() - c0)
      }
    }
    for (const r of runs) {
      // every report acknowledged is in the log, as a reader in the same process sees it
      const seen = c.readReports(await r.backend.store.loadReports(plan, "j0")).length
      if (seen !== n + 20 + R) throw new Error(`${r.v.name}: the log holds ${seen} reports, expected ${n + 20 + R}`)
      await r.backend.close()
      process.stdout.write(
        `log ${String(n).padStart(6)} reports  ${r.v.name.padEnd(9)}  CPU/report p50 ${round(median(r.cpu), 2)} ms (p90 ${round(quantile(r.cpu, 0.9), 2)}, mean ${round(mean(r.cpu), 2)})` +
          `  wall p50 ${round(median(r.wall), 2)} ms (p90 ${round(quantile(r.wall, 0.9), 2)})\n`
      )
    }
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}
