// Workload 5, scale: plans of J jobs after T reports in all (spread evenly over the jobs): store size
// on disk, and wall time and peak RSS of one status process (`concord status PLAN --json`; for the
// baselines bench/baselines/cli.mjs status). Each store grows in place from the smallest T to the
// largest. json-naive and json-lock keep the same file, so the JSON format is measured once, through
// json-lock's command. Timed runs write their output to a file; one more run reads it through a
// pipe, to check that a consumer gets all of it.
import { promises as fsp, rmSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { ROOT } from "../lib/concord.mjs"
import { startProcess, stopAll, tempDir, timeNode } from "../lib/proc.mjs"
import { median, powerFit } from "../lib/stats.mjs"

export const id = "scale"

const GEN = path.join(path.dirname(fileURLToPath(import.meta.url)), "../lib/gen-scale.mjs")
const BIN = path.join(ROOT, "bin/concord.js")
const BASELINE_CLI = path.join(ROOT, "bench/baselines/cli.mjs")

// BENCH_SCALE_JOBS / BENCH_SCALE_TOTALS (comma-separated) measure other sizes, e.g. only the target's
// 1,000 jobs after 100,000 reports: BENCH_SCALE_JOBS=1000 BENCH_SCALE_TOTALS=100000 npm run bench -- --only=scale
const list = (v, dflt) => (v ? v.split(",").map(Number) : dflt)

export function config(quick) {
  const cfg = quick
    ? { jobs: [10, 100], totals: [1000], statusRuns: 3, fidelityReports: 40 }
    : { jobs: [10, 100, 1000], totals: [1000, 10_000, 100_000], statusRuns: 5, slowStatusRuns: 3, fidelityReports: 300 }
  return { ...cfg, jobs: list(process.env.BENCH_SCALE_JOBS, cfg.jobs), totals: list(process.env.BENCH_SCALE_TOTALS, cfg.totals) }
}

export function scaleBackends(backends) {
  const out = backends.filter(b => b !== "json-naive" || !backends.includes("json-lock"))
  // the same concord stores, with every report arriving by `concord sync` from another machine's store
  if (out.includes("concord")) out.splice(out.indexOf("concord") + 1, 0, "concord-via-sync")
  return out
}

async function dirSize(dir) {
  let bytes = 0
  let files = 0
  for (const e of await fsp.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue
    const p = path.join(e.parentPath ?? e.path, e.name)
    try {
      bytes += (await fsp.stat(p)).size
      files++
    } catch {
      // gone (a temp file)
    }
  }
  return { bytes, files }
}

function statusCommand(backend, dir, plan) {
  return backend.startsWith("concord")
    ? { args: [BIN, "status", plan, "--json"], env: { CONCORD_STORE: dir }, cwd: dir }
    : { args: [BASELINE_CLI, backend, dir, "status", plan], env: {} }
}

function check(_backend, out, J, expect) {
  let s
  try {
    s = JSON.parse(out)
  } catch (e) {
    return `status output (${out.length} bytes) is not valid JSON: ${e.message}`
  }
  if (!Array.isArray(s.jobs) || s.jobs.length !== J) return `status shows ${s.jobs?.length} jobs, expected ${J}`
  if (expect) {
    const j = s.jobs.find(x => x.name === expect.job)
    const msg = j?.lastReport?.message
    if (msg !== expect.message) return `job ${expect.job} last report "${msg}", expected "${expect.message}"`
  }
  return null
}

export async function run({ backends, quick, log }) {
  const cfg = config(quick)
  const rows = []
  const errors = []
  let fidelity = null
  for (const b of scaleBackends(backends)) {
    for (const J of cfg.jobs) {
      const dir = tempDir()
      const gen = await startProcess(GEN, [b, dir, String(J)], `${b} generator`)
      try {
        const { plan } = await gen.call("init", {})
        for (const T of cfg.totals) {
          const g0 = Date.now()
          await gen.call("grow", { to: T })
          const genSeconds = (Date.now() - g0) / 1000
          const expect = await gen.call("expectLast", { to: T })
          const size = await dirSize(dir)
          const cmd = statusCommand(b, dir, plan)
          const outFile = path.join(dir, "..", `${path.basename(dir)}-status.out`)
          const times = []
          const rss = []
          let runs = cfg.statusRuns
          for (let r = 0; r < runs; r++) {
            const res = await timeNode(cmd.args, { env: cmd.env, cwd: cmd.cwd, rss: true, stdoutFile: outFile })
            if (res.code !== 0) throw new Error(`${b} status exited ${res.code}: ${res.stderr.slice(0, 2000)}`)
            if (r === 0) {
              const bad = check(b, res.stdout, J, expect)
              if (bad) errors.push(`scale ${b} J=${J} T=${T}: ${bad}`)
              if (res.ms > 3000 && cfg.slowStatusRuns) runs = cfg.slowStatusRuns
              // the same command with its output read through a pipe, as a script or tool would
              const piped = await timeNode(cmd.args, { env: cmd.env, cwd: cmd.cwd })
              const pipedBad = check(b, piped.stdout, J, expect)
              if (pipedBad) {
                errors.push(
                  `scale ${b} J=${J} T=${T}: status output read through a pipe is wrong: ${pipedBad} ` +
                    `(${piped.stdout.length} bytes through the pipe, ${res.stdout.length} written to a file; exit code ${piped.code})`
                )
              }
            }
            times.push(res.ms)
            rss.push(res.maxRssKiB / 1024)
          }
          rmSync(outFile, { force: true })
          // the first status after the reports arrived may do more (e.g. fill a cache) than the next ones
          const rest = times.slice(1)
          const row = {
            backend: b,
            jobs: J,
            reports: T,
            bytes: size.bytes,
            files: size.files,
            statusFirstMs: times[0],
            statusMs: median(rest),
            statusRuns: times,
            peakRssFirstMB: rss[0],
            peakRssMB: Math.max(...rss.slice(1)),
            genSeconds,
          }
          rows.push(row)
          log(
            `scale ${b} J=${J} T=${T}: ${(size.bytes / 1024).toFixed(0)} KiB in ${size.files} files, status first ${row.statusFirstMs.toFixed(0)} ms ` +
              `(${row.peakRssFirstMB.toFixed(0)} MB), then ${row.statusMs.toFixed(0)} ms (${row.peakRssMB.toFixed(0)} MB) (generated in ${genSeconds.toFixed(1)} s)`
          )
        }
        if (b === "concord" && J === cfg.jobs[0]) {
          fidelity = await gen.call("fidelity", { k: cfg.fidelityReports })
          log(`scale fidelity (${fidelity.k} reports): real path ${fidelity.real.bytes} B / built ${fidelity.built.bytes} B`)
        }
      } finally {
        await stopAll([gen])
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }
  // how each metric grows with the number of reports, per plan size: y ≈ c · T^k
  const fits = []
  for (const b of scaleBackends(backends)) {
    for (const J of cfg.jobs) {
      const rs = rows.filter(r => r.backend === b && r.jobs === J)
      if (rs.length < 2) continue
      const T = rs.map(r => r.reports)
      for (const metric of ["bytes", "statusFirstMs", "statusMs", "peakRssFirstMB", "peakRssMB"]) {
        const f = powerFit(
          T,
          rs.map(r => r[metric])
        )
        if (f) fits.push({ backend: b, jobs: J, metric, exponent: f.k, r2: f.r2, perReport: (rs.at(-1)[metric] - rs[0][metric]) / (T.at(-1) - T[0]) })
      }
    }
  }
  return { config: cfg, rows, fits, fidelity, errors }
}
