#!/usr/bin/env node
// concord benchmarks: every workload against concord and the baselines, in one run.
//
//   npm run bench                 full run: bench/results.json, BENCHMARKS.md, bench/charts/*.svg
//   npm run bench -- --quick      smoke run (< 2 min): bench/quick/ (not committed)
//   npm run bench -- --only=contention,founding   a subset (writes to bench/partial/)
//   node bench/run.mjs --render    rewrite BENCHMARKS.md and bench/charts/ from bench/results.json
//   npm run bench -- --only=dashboard --merge   a subset, then merged into bench/results.json (each merged
//                                 workload keeps the date it was measured) and BENCHMARKS.md re-rendered
//
// Exit status: 0, or 1 if any result is wrong (a lost update, a wrong final state, a report never
// seen, a wrong status) where the backend is meant to be right, or if a workload crashed. Never
// because something is slow.
import { execFileSync } from "node:child_process"
import { promises as fsp } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { availableBackends } from "./lib/backends.mjs"
import { ROOT } from "./lib/concord.mjs"
import { writeCharts } from "./lib/charts.mjs"
import { judge, renderMarkdown } from "./lib/report.mjs"
import * as contention from "./workloads/contention.mjs"
import * as founding from "./workloads/founding.mjs"
import * as visibility from "./workloads/visibility.mjs"
import * as reportCost from "./workloads/report-cost.mjs"
import * as scale from "./workloads/scale.mjs"
import * as sync from "./workloads/sync.mjs"
import * as dashboard from "./workloads/dashboard.mjs"
import * as mcp from "./workloads/mcp.mjs"

const WORKLOADS = [contention, founding, visibility, reportCost, scale, sync, dashboard, mcp]
const HERE = path.dirname(fileURLToPath(import.meta.url))

const args = process.argv.slice(2)
if (args.includes("--render")) {
  const results = JSON.parse(await fsp.readFile(path.join(HERE, "results.json"), "utf8"))
  const verdict = judge(results)
  results.failures = verdict.failures
  results.targets = verdict.targets
  const charts = await writeCharts(path.join(HERE, "charts"), results)
  await fsp.writeFile(path.join(ROOT, "BENCHMARKS.md"), renderMarkdown(results, { charts, chartDir: "bench/charts" }))
  process.stdout.write(`rewrote BENCHMARKS.md and ${charts.length} charts from bench/results.json (${results.date})\n`)
  process.exit(0)
}
const quick = args.includes("--quick")
const onlyArg = args.find(a => a.startsWith("--only="))
const only = onlyArg ? onlyArg.slice("--only=".length).split(",") : null
for (const a of args) {
  if (a !== "--quick" && a !== "--merge" && !a.startsWith("--only=")) {
    process.stderr.write(`bench: unknown argument ${a}\nusage: npm run bench [-- --quick] [-- --only=${WORKLOADS.map(w => w.id).join(",")}]\n`)
    process.exit(2)
  }
}
if (only) {
  const unknown = only.filter(o => !WORKLOADS.some(w => w.id === o))
  if (unknown.length) {
    process.stderr.write(`bench: unknown workload ${unknown.join(", ")} (known: ${WORKLOADS.map(w => w.id).join(", ")})\n`)
    process.exit(2)
  }
}

const t0 = Date.now()
const log = msg => process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`)

function sh(cmd, cmdArgs) {
  try {
    return execFileSync(cmd, cmdArgs, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return null
  }
}

async function pkgVersion(name) {
  try {
    return JSON.parse(await fsp.readFile(path.join(name.startsWith("@automerge/") ? ROOT : HERE, "node_modules", name, "package.json"), "utf8")).version
  } catch {
    return null
  }
}

async function machine() {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    automerge: await pkgVersion("@automerge/automerge"),
    betterSqlite3: await pkgVersion("better-sqlite3"),
    properLockfile: await pkgVersion("proper-lockfile"),
    tmpdir: os.tmpdir(),
    filesystem: sh("stat", ["-f", "-c", "%T", os.tmpdir()]),
    commit: sh("git", ["rev-parse", "--short", "HEAD"]),
    dirty: (sh("git", ["status", "--porcelain", "--untracked-files=no", "--", "src", "bin", "scripts", "bench", "package.json"]) ?? "") !== "",
  }
}

const results = {
  mode: quick ? "quick" : only ? "partial" : "full",
  date: new Date().toISOString(),
  machine: await machine(),
  backends: null,
  workloads: {},
  errors: [],
}

log(`concord bench, ${results.mode} mode, node ${process.version}, ${results.machine.cores} cores`)
results.backends = await availableBackends(log)
if (!results.backends.ok.includes("concord")) {
  log(`concord is not available: ${results.backends.skipped.concord}`)
  process.exit(1)
}

for (const w of WORKLOADS) {
  if (only && !only.includes(w.id)) continue
  // Each workload starts on a settled disk: what the previous one left to write back is written first
  // (sync(1)), so its fsyncs are not queued behind another workload's thousands of files.
  try {
    execFileSync("sync", [], { stdio: "ignore", timeout: 120_000 })
  } catch {
    // no sync(1) here: go on
  }
  const w0 = Date.now()
  log(`--- workload ${w.id}`)
  try {
    results.workloads[w.id] = await w.run({ backends: results.backends.ok, quick, log })
  } catch (e) {
    log(`workload ${w.id} crashed: ${e?.stack ?? e}`)
    results.workloads[w.id] = { crashed: String(e?.stack ?? e) }
    results.errors.push(`${w.id}: crashed: ${String(e?.message ?? e).split("\n")[0]}`)
  }
  if (results.workloads[w.id]) results.workloads[w.id].seconds = (Date.now() - w0) / 1000
}
results.seconds = (Date.now() - t0) / 1000

const verdict = judge(results)
results.failures = verdict.failures
results.targets = verdict.targets

const outDir = results.mode === "full" ? ROOT : path.join(HERE, results.mode)
const chartDir = results.mode === "full" ? path.join(HERE, "charts") : path.join(outDir, "charts")
await fsp.mkdir(outDir, { recursive: true })
const charts = await writeCharts(chartDir, results)
const resultsFile = results.mode === "full" ? path.join(HERE, "results.json") : path.join(outDir, "results.json")
await fsp.writeFile(resultsFile, `${JSON.stringify(results, null, 1)}\n`)
const mdFile = path.join(outDir, "BENCHMARKS.md")
await fsp.writeFile(mdFile, renderMarkdown(results, { charts, chartDir: path.relative(outDir, chartDir) }))
log(`wrote ${path.relative(ROOT, resultsFile)}, ${path.relative(ROOT, mdFile)}, ${charts.length} charts in ${path.relative(ROOT, chartDir)}/`)

if (args.includes("--merge") && only && !quick) {
  const fullFile = path.join(HERE, "results.json")
  const full = JSON.parse(await fsp.readFile(fullFile, "utf8"))
  for (const id of Object.keys(results.workloads))
    full.workloads[id] = { ...results.workloads[id], measuredAt: results.date, measuredOn: results.machine?.commit }
  full.errors = [...(full.errors ?? []).filter(e => !Object.keys(results.workloads).some(id => e.startsWith(`${id}:`))), ...results.errors]
  const v = judge(full)
  full.failures = v.failures
  full.targets = v.targets
  await fsp.writeFile(fullFile, `${JSON.stringify(full, null, 1)}\n`)
  const fullCharts = await writeCharts(path.join(HERE, "charts"), full)
  await fsp.writeFile(path.join(ROOT, "BENCHMARKS.md"), renderMarkdown(full, { charts: fullCharts, chartDir: "bench/charts" }))
  log(`merged ${Object.keys(results.workloads).join(", ")} into bench/results.json; rewrote BENCHMARKS.md`)
}

for (const t of results.targets) log(`target: ${t.status.toUpperCase().padEnd(7)} ${t.target}: ${t.detail}`)
if (verdict.failures.length) {
  log(`FAILED: ${verdict.failures.length} wrong result(s):`)
  for (const f of verdict.failures) log(`  ${f}`)
  process.exit(1)
}
log(`ok: no wrong results (${results.seconds.toFixed(0)} s)`)
