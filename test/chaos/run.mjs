#!/usr/bin/env node
// `npm run chaos` (long mode: >= 200 process-chaos kills) and `npm run chaos -- --quick` (CI).
// Runs every chaos test against the built CLI (dist/, bin/concord.js) and WRITES RELIABILITY.md: one row
// per test with what it does, iterations, faults injected, violations found and the commit it ran on.
// Exit 1 if any test found a violation (they are all listed in RELIABILITY.md), 0 otherwise.
//   --quick           small iteration counts, well under 2 minutes on an idle 2-core machine
//   --only a,b        run only these tests (process, network, soak, fuzz, disk)
//   --out FILE        where to write the report (default RELIABILITY.md at the repository root)
//   --until HH:MM     (UTC) a wall-clock budget: process chaos starts no new plan run that might not end
//                     by then (its row then says how many of its target kills it reached); the long
//                     mode then runs process chaos last
import { spawn, spawnSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const argv = process.argv.slice(2)
const quick = argv.includes("--quick")
const onlyArg = argv.includes("--only") ? argv[argv.indexOf("--only") + 1].split(",") : undefined
const out = argv.includes("--out") ? path.resolve(argv[argv.indexOf("--out") + 1]) : path.join(ROOT, "RELIABILITY.md")
const want = name => !onlyArg || onlyArg.includes(name)
const until = (() => {
  if (!argv.includes("--until")) return undefined
  const [h, m] = argv[argv.indexOf("--until") + 1].split(":").map(Number)
  const d = new Date()
  d.setUTCHours(h, m, 0, 0)
  return d.getTime()
})()
const log = m => process.stderr.write(`chaos: ${m}\n`)
const t0 = Date.now()

const { processChaosRound, CALM_MAX_MS } = await import("./process.mjs")
const { networkChaos, remoteWatchSoak } = await import("./network.mjs")
const { storeGoneUnderRun } = await import("./storegone.mjs")
const { fuzzPlanSpecs, fuzzCli, fuzzSyncFrames, fuzzCborFrames, fuzzMcpTools } = await import("./fuzz.mjs")

const rows = []
const sections = []
const add = row => {
  rows.push(row)
  log(`${row.name}: ${row.iterations} iterations, ${row.violations.length} violation(s) (${Math.round(row.ms / 1000)} s)`)
  for (const v of row.violations.slice(0, 5)) log(`  - ${v}`)
}
async function timed(fn) {
  const s = Date.now()
  const r = await fn()
  return { ...r, ms: Date.now() - s }
}

// ---------------------------------------------------------------- process chaos
if (want("process"))
  sections.push(async () => {
    const target = quick ? 6 : 200
    const kills = { job: 0, orchestrator: 0, report: 0, mcp: 0, server: 0 }
    const violations = []
    let rounds = 0
    let attempts = 0
    let acked = 0
    let ackedMcp = 0
    let mcpServers = 0
    const overtime = []
    const s = Date.now()
    const roundDeadline = quick ? 240_000 : 400_000
    let budgetStop = false
    while (Object.values(kills).reduce((a, b) => a + b, 0) < target) {
      if (until !== undefined && rounds > 0 && Date.now() + roundDeadline + CALM_MAX_MS > until) {
        budgetStop = true
        log(`process chaos: stopping at the time budget (--until) after ${rounds} plan run(s)`)
        break
      }
      const left = target - Object.values(kills).reduce((a, b) => a + b, 0)
      const r = await processChaosRound({ maxKills: Math.min(left, quick ? 6 : 25), deadlineMs: roundDeadline, log })
      rounds++
      for (const k of Object.keys(kills)) kills[k] += r.kills[k]
      attempts += r.attempts
      acked += r.acked
      ackedMcp += r.ackedMcp
      mcpServers += r.mcpServers
      violations.push(...r.violations.map(v => `round ${rounds}: ${v}`))
      if (r.overtimeMs > 0) overtime.push(`round ${rounds}: ${Math.round(r.overtimeMs / 1000)} s`)
      log(`process chaos round ${rounds}: kills ${JSON.stringify(r.kills)}, ${r.violations.length} violation(s)`)
      if (Object.values(r.kills).reduce((a, b) => a + b, 0) === 0) break // nothing left to kill: avoid looping forever
    }
    add({
      name: "process chaos",
      what: `plan of 20 jobs (maxParallel 5, 4 dependency waves), each a real process reporting progress/completion at random, half through \`concord report\`, half through a \`concord mcp\` server (MCP SDK client over stdio, started from the job's $CONCORD_MCP_CONFIG, restarted after a kill); \`concord run --wait\` restarted after every kill, \`approve --retry\` for each killed job; checks: every report whose command exited 0 or whose mc_report call returned is in the store, no attempt launched twice, no job process or \`concord mcp\` server outlives the plan, completed jobs were run and reported, final state = a clean run's (plan and all 20 jobs completed). ${rounds} plan run(s), ${attempts} attempts, ${acked} acknowledged reports (${ackedMcp} through ${mcpServers} \`concord mcp\` servers)${overtime.length ? `; ${overtime.length} plan run(s) finished only after their ${roundDeadline / 1000} s deadline, in the calm time that follows it (no kills, retries still approved; a plan that stops changing for 60 s is stuck): ${overtime.join(", ")}` : ""}${budgetStop ? `. Stopped at the run's time budget (--until) short of the target of ${target} kills` : ""}`,
      iterations: Object.values(kills).reduce((a, b) => a + b, 0),
      faults: `SIGKILL: ${kills.job} job processes, ${kills.orchestrator} orchestrators, ${kills.report} \`concord report\`, ${kills.mcp} \`concord mcp\`, ${kills.server} sync servers`,
      violations,
      ms: Date.now() - s,
    })
  })

// ---------------------------------------------------------------- network
if (want("network"))
  sections.push(async () => {
    const n = quick ? 4 : 20
    const r = await timed(() => networkChaos({ reportsPerPeer: n, log }))
    const f = r.faults
    add({
      name: "network faults",
      what: `TCP proxy on 127.0.0.1 between 3 peers (\`concord sync --watch\`) and \`concord serve\`; each peer writes ${n} reports while the proxy misbehaves, then the network heals; checks: all 4 stores converge (same heads for the plan and every report log) within 90 s, every acknowledged report (exit 0) is in every store. ${r.acked}/${r.attempted} reports acknowledged`,
      iterations: r.attempted,
      faults: `${f.connections} connections: ${f.delayed} chunks delayed, ${f.dropped} dropped, ${f.duplicated} duplicated, ${f.reordered} reordered, ${f.cut} connections cut (mid-message or after a random lifetime)`,
      violations: r.violations,
      ms: r.ms,
    })
  })
if (want("soak"))
  sections.push(async () => {
    const seconds = quick ? 22 : 90
    const restarts = quick ? 2 : 6
    const r = await timed(() => remoteWatchSoak({ seconds, restarts, log }))
    add({
      name: "remote watch soak",
      what: "`concord status --remote --watch --json` against a live server; checks: no MaxListenersExceededWarning, no stack trace, still running and showing a report made after the last restart",
      iterations: r.seconds,
      faults: `server SIGKILLed and restarted ${restarts} times over ${r.seconds} s`,
      violations: r.violations,
      ms: r.ms,
    })
  })

// ---------------------------------------------------------------- hostile input
if (want("fuzz"))
  sections.push(async () => {
    const r1 = await timed(() => fuzzPlanSpecs({ runs: quick ? 300 : 3000 }))
    add({
      name: "fuzz: plan files, job names, reports (in process)",
      what: "fast-check: arbitrary YAML/JSON plan values and job names, byte-mutated examples/demo.yaml (invalid UTF-8 included), report status/message/progress (huge, binary, control characters); checks: parsePlanSpec / validateReport either accept or throw their typed error with a message, nothing else",
      iterations: r1.runs,
      faults: "random and mutated input",
      violations: r1.violations,
      ms: r1.ms,
    })
    const r2 = await timed(() => fuzzCli({ runs: quick ? 10 : 120 }))
    add({
      name: "fuzz: CLI arguments and report messages (real binary)",
      what: "random argument lists (commands, flags, control characters, huge strings) and hostile report messages through `concord`; then human `status`, `history`, `plan list`; checks: exit 0/1/2, no stack trace, nothing written on exit 2, no raw control characters on stderr or in human output",
      iterations: r2.runs,
      faults: "hostile argv",
      violations: r2.violations,
      ms: r2.ms,
    })
    const r3 = await timed(() => fuzzSyncFrames({ runs: quick ? 30 : 400 }))
    const r4 = await timed(() => fuzzCborFrames({ runs: quick ? 20 : 200 }))
    add({
      name: "fuzz: sync frames",
      what: `random WebSocket frames (binary, text, JSON shapes) from an authenticated client to a real \`concord serve\`, then well-framed CBOR messages after a proper join (${r4.messages} messages in ${r4.runs} connections: sync / request / ephemeral / unknown types, forged sender ids, random document ids, random, truncated and byte-flipped real sync messages); checks: the server survives without a stack trace, the plan stays readable, a legitimate \`concord sync\` still succeeds`,
      iterations: r3.runs + r4.runs,
      faults: "random frames, hostile CBOR messages",
      violations: [...r3.violations, ...r4.violations],
      ms: r3.ms + r4.ms,
    })
    const r5 = await timed(() => fuzzMcpTools({ runs: quick ? 30 : 300 }))
    add({
      name: "fuzz: MCP tool arguments",
      what: `one real \`concord mcp\` server (started for a job) driven by the MCP SDK client over stdio; each of its ${r5.tools} tools called at random with arbitrary JSON or its own argument shape filled with hostile values (huge, binary, control characters, wrong types, out-of-range numbers); checks: every call answers (result or MCP error, no hang, the server stays up), no stack trace, no raw control characters in answers, nothing written to the store on a refusal`,
      iterations: r5.runs,
      faults: "hostile tool arguments",
      violations: r5.violations,
      ms: r5.ms,
    })
  })

// ---------------------------------------------------------------- disk faults (vitest file)
if (want("disk"))
  sections.push(async () => {
    const s = Date.now()
    const jsonOut = path.join(os.tmpdir(), `concord-disk-${process.pid}.json`)
    // async: in quick mode the network proxy runs in this process at the same time
    await new Promise(resolve =>
      spawn(
        process.execPath,
        [
          path.join(ROOT, "node_modules/vitest/vitest.mjs"),
          "run",
          "test/chaos/disk.test.ts",
          "test/orchestrator/faults.e2e.test.ts",
          "-t",
          "disk faults|empty exit file|empty lock file",
          "--reporter=json",
          `--outputFile=${jsonOut}`,
          "--retry=0",
        ],
        {
          cwd: ROOT,
          // CI mode: vitest's worker RPC timing out while a spawnSync blocks the worker on a loaded machine
          // ("Timeout calling onTaskUpdate") is not a disk fault; but no retries: a first failure counts
          env: { ...process.env, CI: "1" },
          stdio: ["ignore", "ignore", "ignore"],
        }
      ).on("close", resolve)
    )
    let results = []
    try {
      results = JSON.parse(readFileSync(jsonOut, "utf8")).testResults.flatMap(f => f.assertionResults)
    } catch (e) {
      results = [{ title: "disk faults", status: "failed", failureMessages: [`could not run test/chaos/disk.test.ts: ${e.message}`] }]
    }
    const run = results.filter(r => r.status === "passed" || r.status === "failed")
    add({
      name: "disk faults",
      what: `test/chaos/disk.test.ts and the empty exit / lock file cases of test/orchestrator/faults.e2e.test.ts: ${run.map(r => r.title.replace(/:.*/, "")).join("; ")}. Checks: a clear one-line error or a skipped/quarantined chunk with a warning, no stack trace, nothing durable lost`,
      iterations: run.length,
      faults: `full disk (${results.find(r => /full disk \(real tmpfs/.test(r.title))?.status === "skipped" ? "injected ENOSPC only: cannot mount a tmpfs here" : "2 MB tmpfs, and injected ENOSPC"}), read-only store, store deleted, truncated / zeroed / garbage chunks, damaged only chunk, empty exit file, empty lock file`,
      violations: run.filter(r => r.status === "failed").map(r => `${r.title}: ${(r.failureMessages ?? []).join(" ").split("\n")[0].slice(0, 300)}`),
      ms: Date.now() - s,
    })
  })

if (want("disk"))
  sections.push(async () => {
    const r = await timed(() => storeGoneUnderRun({ rounds: quick ? 1 : 3, log }))
    add({
      name: "disk faults: store deleted under a running orchestrator",
      what: "`concord run --wait` with two running jobs, each running `concord report` in a loop (through the run's local endpoint or the store); its store directory vanishes (renamed away at once, at a random moment of a report); checks: no stack trace, every stderr line concord's own, the store is not brought back as a skeleton holding only later chunks (by the orchestrator or a report), every report that exited 0 is in the moved store, every report after the store went exits 1 saying the store is gone, the orchestrator exits 1 (plan gone) or cleanly on SIGTERM (130; its jobs keep running detached, as documented, and are killed by the harness)",
      iterations: r.rounds,
      faults: "store directory deleted mid-run",
      violations: r.violations,
      ms: r.ms,
    })
  })

// Quick mode runs the sections side by side (CI time); the long mode one after another.
const guarded = (f, i) =>
  f().catch(e =>
    add({
      name: `section ${i + 1} (harness error)`,
      what: "the chaos harness itself failed",
      iterations: 0,
      faults: "-",
      violations: [`harness error: ${String(e?.message ?? e).split("\n")[0]}`],
      ms: 0,
    })
  )
if (quick) await Promise.all(sections.map(guarded))
else {
  // with a time budget the fixed-length sections go first, and process chaos takes what is left
  const order = until !== undefined && want("process") ? [...sections.slice(1), sections[0]] : sections
  for (const [i, f] of order.entries()) await guarded(f, i)
}
const order = [
  "process chaos",
  "network faults",
  "remote watch soak",
  "fuzz: plan files, job names, reports (in process)",
  "fuzz: CLI arguments and report messages (real binary)",
  "fuzz: sync frames",
  "fuzz: MCP tool arguments",
  "disk faults",
  "disk faults: store deleted under a running orchestrator",
]
rows.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name))

// ---------------------------------------------------------------- RELIABILITY.md
const git = args => spawnSync("git", args, { cwd: ROOT, encoding: "utf8" }).stdout.trim()
const commit = git(["rev-parse", "--short=12", "HEAD"]) || "unknown"
const dirty = git(["status", "--porcelain", "--", "src", "test", "bin", "scripts"]) ? " (with uncommitted changes)" : ""
const shownArgs = argv.filter((x, i) => x !== "--out" && argv[i - 1] !== "--out")
const cell = s => String(s).replace(/\|/g, "\\|").replace(/\n/g, " ")
const total = rows.reduce((n, r) => n + r.violations.length, 0)
const lines = [
  "# Reliability",
  "",
  "Written by `npm run chaos` (test/chaos/run.mjs); do not edit by hand. " +
    `This run: \`npm run chaos${shownArgs.length ? ` -- ${shownArgs.join(" ")}` : ""}\` on commit \`${commit}\`${dirty}, ` +
    `${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC, ${os.cpus().length} cores (load average ${os.loadavg()[0].toFixed(1)} at the end), Node ${process.version}, ` +
    `${Math.round((Date.now() - t0) / 1000)} s.`,
  "",
  "The quick mode (`npm run chaos -- --quick`, run by `.ci/run` after `npm test`) uses small iteration counts; " +
    "the long mode (`npm run chaos`) runs at least 200 process-chaos kills, 20 reports per peer through the faulty proxy, " +
    "a 90 s soak with 6 server restarts and about 10x the fuzz cases. A violation is a broken promise of the README; " +
    "each one is listed below, none is hidden.",
  "",
  "| test | what it does | iterations | faults injected | violations | commit |",
  "| --- | --- | --- | --- | --- | --- |",
  ...rows.map(r => `| ${cell(r.name)} | ${cell(r.what)} | ${r.iterations} | ${cell(r.faults)} | ${r.violations.length} | \`${commit}\` |`),
  "",
  `## Violations found (${total})`,
  "",
]
for (const r of rows) {
  if (r.violations.length === 0) continue
  lines.push(`### ${r.name}`, "")
  for (const v of r.violations.slice(0, 30)) lines.push(`- ${cell(v)}`)
  if (r.violations.length > 30) lines.push(`- ... and ${r.violations.length - 30} more`)
  lines.push("")
}
if (total === 0) lines.push("None in this run.", "")
lines.push(
  "## Not covered yet",
  "",
  "- A full disk is a real tmpfs only where the tests may mount one (root); elsewhere only the injected ENOSPC runs (test/chaos/enospc-preload.mjs: every write under the store fails after part of its data landed), which does not exercise a disk that fills up between the temp file's write and its fsync.",
  "- Partitions that drop packets without closing the connection are only approximated: the proxy drops, duplicates and reorders whole TCP chunks and cuts connections; a silent half-open link is found by the server's ping (15 s) alone.",
  "- The `concord mcp` server of a job is killed only as a child process (SIGKILL); a job's agent that stops reading the server's stdout (a stuck pipe) is not exercised.",
  ""
)
writeFileSync(out, lines.join("\n"))
log(`wrote ${path.relative(process.cwd(), out) || out}: ${rows.length} tests, ${total} violation(s), ${Math.round((Date.now() - t0) / 1000)} s`)
process.exit(total > 0 ? 1 : 0)
