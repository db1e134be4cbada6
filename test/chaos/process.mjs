// Process chaos: a plan of 20 jobs (real processes reporting through the real `concord report` or a real
// `concord mcp` server) run by `concord run --wait`, while the driver SIGKILLs random job processes, the
// orchestrator, `concord report` processes, `concord mcp` servers and a `concord serve` over the same
// store at random moments, restarting the orchestrator
// (and the server) each time, and approving a retry whenever a killed job paused the plan (as a human
// would). Afterwards it checks the store against the jobs' own ledgers.
import { spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const BIN = path.join(ROOT, "bin/concord.js")
const JOB = path.join(ROOT, "test/chaos/fixtures/chaos-job.mjs")
const { PlanStore, readPlan, readReports } = await import(path.join(ROOT, "dist/src/index.js"))

const sleep = ms => new Promise(r => setTimeout(r, ms))
const rand = (a, b) => a + Math.floor(Math.random() * (b - a))
const pick = xs => xs[Math.floor(Math.random() * xs.length)]
const alive = pid => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return e.code === "EPERM"
  }
}

function planYaml(n) {
  const jobs = []
  for (let i = 0; i < n; i++) {
    const deps = i >= 5 ? `, dependsOn: [j${i - 5}]` : ""
    jobs.push(`  - { name: j${i}, run: "node ${JOB}"${deps} }`)
  }
  return `name: chaos\nmaxParallel: 5\ngraceMs: 300\njobs:\n${jobs.join("\n")}\n`
}

/** Async: in quick mode the network proxy of another section runs in this same process. */
function cli(store, env, args) {
  return new Promise(resolve => {
    const c = spawn(process.execPath, [BIN, ...args], { cwd: store, env: { ...env, CONCORD_STORE: store }, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    c.stdout.on("data", d => (stdout += d))
    c.stderr.on("data", d => (stderr += d))
    const t = setTimeout(() => c.kill("SIGKILL"), 120_000)
    c.on("close", code => (clearTimeout(t), resolve({ code, stdout, stderr })))
  })
}

/** How long a round may go on without faults past its deadline, and how long without any change of the plan. */
export const CALM_MAX_MS = 150_000
const CALM_IDLE_MS = 60_000

/** One plan run under chaos. Returns { kills: {kind: n}, violations: [], ms, jobsRun }. */
export async function processChaosRound({ maxKills = 10, deadlineMs = 240_000, log = () => {} } = {}) {
  const root = mkdtempSync(path.join(os.tmpdir(), "concord-chaos-"))
  const store = path.join(root, "store")
  const ledger = path.join(root, "ledger")
  const bindir = path.join(root, "bin")
  mkdirSync(store)
  mkdirSync(ledger)
  mkdirSync(bindir)
  writeFileSync(path.join(bindir, "concord"), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`, { mode: 0o755 })
  const env = { ...process.env, CHAOS_LEDGER: ledger, PATH: `${bindir}:${process.env.PATH}` }
  for (const k of Object.keys(env)) if (k.startsWith("CONCORD_")) delete env[k]
  const violations = []
  const kills = { job: 0, orchestrator: 0, report: 0, mcp: 0, server: 0 }
  const t0 = Date.now()
  writeFileSync(path.join(root, "plan.yaml"), planYaml(20))
  const created = await cli(store, env, ["plan", "create", path.join(root, "plan.yaml"), "--json"])
  if (created.code !== 0) throw new Error(`plan create: ${created.stderr}`)
  const id = JSON.parse(created.stdout).id

  const procs = new Set()
  const start = (args, what) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: store, env: { ...env, CONCORD_STORE: store }, stdio: ["ignore", "pipe", "pipe"] })
    let err = ""
    child.stderr.on("data", d => (err += d))
    child.stdout.on("data", () => {})
    const p = { child, what, err: () => err, done: new Promise(r => child.on("close", (code, signal) => r({ code, signal }))) }
    procs.add(p)
    p.done.then(() => procs.delete(p))
    return p
  }
  const port = rand(20000, 40000)
  let orch = start(["run", id, "--wait", "--quiet"], "orchestrator")
  let server = start(["serve", "--port", String(port)], "server")
  const stderrOf = []
  const checkStderr = p => {
    if (/\n\s+at |TypeError|RangeError|ReferenceError|Unhandled/.test(p.err())) {
      violations.push(`${p.what} printed a stack trace / internal error: ${p.err().slice(0, 300)}`)
    }
    stderrOf.push(p.err())
  }

  let status
  const readStatus = async () => {
    const r = await cli(store, env, ["status", id, "--json"])
    if (r.code !== 0) {
      violations.push(`status --json failed (${r.code}): ${r.stderr.trim().slice(0, 200)}`)
      return undefined
    }
    return JSON.parse(r.stdout)
  }
  const totalKills = () => Object.values(kills).reduce((a, b) => a + b, 0)
  const retried = new Set()
  /** every `approve --retry` the harness made, with its exit code (for a round that does not complete) */
  const approvals = []
  // Past the deadline the round goes on calmly (no more kills, retries still approved) while the plan
  // still changes, for at most CALM_MAX_MS: a plan that is merely slow under load and many kills finishes
  // (the round says it needed overtime), and only one that stops moving is reported as stuck. (A long
  // run's round 6 ended "paused at on_error" with a failed job and its dependents waiting: the last status
  // read before the deadline, the retry the harness approved right after it never looked at.)
  let lastChange = Date.now()
  let shape = ""
  let calm = false
  for (;;) {
    const now = Date.now()
    if (now - t0 >= deadlineMs) {
      calm = true
      if (now - t0 >= deadlineMs + CALM_MAX_MS || now - lastChange >= CALM_IDLE_MS) break
    }
    await sleep(rand(250, 1000))
    status = await readStatus()
    const nextShape = status ? `${status.status}/${status.checkpoint}/${status.jobs.map(j => `${j.status}#${j.attempt}`).join(",")}` : shape
    if (nextShape !== shape) {
      shape = nextShape
      lastChange = Date.now()
    }
    if (status?.status === "completed") break
    if (status?.checkpoint === "on_error") {
      // as a human would: retry the job the checkpoint names once it has failed (a status read between
      // the approval and the checkpoint clearing shows the new attempt already running: not again), and
      // count an attempt as retried only when the approval went through
      const job = status.checkpointContext?.jobName
      const j = status.jobs.find(x => x.name === job)
      const seq = `${job}:${j?.attempt}`
      if (job && j && ["failed", "stopped"].includes(j.status) && !retried.has(seq)) {
        const r = await cli(store, env, ["approve", id, "--retry", job])
        approvals.push(`${seq} -> ${r.code}${r.code === 0 ? "" : ` (${r.stderr.trim().slice(0, 160)})`}`)
        if (r.code === 0) retried.add(seq)
        else log(`approve --retry ${job}: ${r.code} ${r.stderr.trim()}`)
      } else if (job && j?.status === "completed" && !retried.has(`${seq}:completed`)) {
        // an on_error checkpoint that names a completed job: nothing to retry; say so, and let the plan
        // go on as a human would (approve the checkpoint)
        retried.add(`${seq}:completed`)
        violations.push(
          `the plan paused at an on_error checkpoint naming job ${job} #${j.attempt}, which is completed (its completed report and the orchestrator's record of its killed process crossed)`
        )
        const r = await cli(store, env, ["approve", id])
        if (r.code !== 0) log(`approve ${id}: ${r.code} ${r.stderr.trim()}`)
      }
    }
    // the orchestrator exits by itself only when the plan is over
    if (orch.child.exitCode !== null || orch.child.signalCode !== null) {
      const r = await orch.done
      checkStderr(orch)
      if (r.signal !== "SIGKILL") log(`orchestrator exited ${r.code ?? r.signal} with plan ${status?.status}`)
      orch = start(["run", id, "--wait", "--quiet"], "orchestrator")
    }
    if (server.child.exitCode !== null || server.child.signalCode !== null) server = start(["serve", "--port", String(port)], "server")
    if (calm || totalKills() >= maxKills) continue
    const kind = pick(["job", "job", "job", "orchestrator", "orchestrator", "report", "report", "mcp", "mcp", "server"])
    if (kind === "job") {
      const pids = readdirSync(ledger)
        .filter(f => /^j\d+\.\d+\.\d+$/.test(f))
        .map(f => Number(f.split(".")[2]))
        .filter(alive)
      if (pids.length === 0) continue
      const pid = pick(pids)
      try {
        // the job's whole process group (its shell wrapper and the node script)
        process.kill(-pid, "SIGKILL")
      } catch {
        try {
          process.kill(pid, "SIGKILL")
        } catch {}
      }
      kills.job++
    } else if (kind === "report" || kind === "mcp") {
      const dir = path.join(ledger, kind === "report" ? "reports" : "mcp")
      const pids = existsSync(dir) ? readdirSync(dir).map(Number).filter(alive) : []
      if (pids.length === 0) continue
      try {
        process.kill(pick(pids), "SIGKILL")
        kills[kind]++
      } catch {}
    } else if (kind === "orchestrator") {
      orch.child.kill("SIGKILL")
      await orch.done
      checkStderr(orch)
      kills.orchestrator++
      await sleep(rand(0, 500))
      orch = start(["run", id, "--wait", "--quiet"], "orchestrator")
    } else {
      server.child.kill("SIGKILL")
      await server.done
      kills.server++
      server = start(["serve", "--port", String(port)], "server")
    }
  }
  if (status?.status !== "completed") status = (await readStatus()) ?? status // not the read before the last approval
  const reached = status?.status === "completed"
  const overtimeMs = reached ? Math.max(0, Date.now() - t0 - deadlineMs) : 0
  if (!reached) {
    violations.push(
      `the plan did not complete within ${deadlineMs / 1000}s plus ${Math.round((Date.now() - t0 - deadlineMs) / 1000)}s without faults, and had not changed for ${Math.round((Date.now() - lastChange) / 1000)}s (load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores): plan ${status?.status} at ${status?.checkpoint ?? "-"}, jobs ${status?.jobs
        .map(j => `${j.name}=${j.status}#${j.attempt}`)
        .join(" ")}; checkpoint context ${JSON.stringify(status?.checkpointContext ?? null)}; failed: ${
        status?.jobs
          .filter(j => ["failed", "stopped"].includes(j.status))
          .map(j => `${j.name}#${j.attempt} (${String(j.error ?? "").slice(0, 120)}; ${j.exitMeaning ?? "-"})`)
          .join(", ") || "none"
      }; retries approved by the harness: ${approvals.join(", ") || "none"}`
    )
  }
  // the orchestrator ends by itself once the plan is completed
  const end = await Promise.race([orch.done, sleep(30_000).then(() => undefined)])
  if (reached && !end) violations.push("the orchestrator did not exit after the plan completed")
  if (end && reached && end.code !== 0) violations.push(`the orchestrator exited ${end.code ?? end.signal} after the plan completed`)
  orch.child.kill("SIGKILL")
  server.child.kill("SIGTERM")
  await Promise.all([...procs].map(p => p.done))

  // ---- checks against the ledgers
  const files = readdirSync(ledger).filter(f => /^j\d+\.\d+\.\d+$/.test(f))
  const entries = files.map(f => {
    const [job, attempt, pid] = f.split(".")
    const lines = readFileSync(path.join(ledger, f), "utf8").split("\n").filter(Boolean)
    return { job, attempt: Number(attempt), pid: Number(pid), lines }
  })
  // 1. no attempt launched twice
  const byAttempt = new Map()
  for (const e of entries) byAttempt.set(`${e.job}#${e.attempt}`, [...(byAttempt.get(`${e.job}#${e.attempt}`) ?? []), e.pid])
  for (const [a, pids] of byAttempt) if (pids.length > 1) violations.push(`attempt ${a} was launched ${pids.length} times (pids ${pids.join(", ")})`)
  // 2. every report whose command exited 0 is in the store
  const ps = new PlanStore(store, { onWarning: () => {} })
  const inStore = new Set()
  const completedReport = new Set()
  for (let i = 0; i < 20; i++) {
    for (const r of readReports(await ps.loadReports(id, `j${i}`))) {
      inStore.add(r.message)
      if (r.status === "completed") completedReport.add(`j${i}#${r.attempt}`)
    }
  }
  let acked = 0
  for (const e of entries) {
    for (const l of e.lines) {
      const m = /^report 0 (.+)$/.exec(l)
      if (!m) continue
      acked++
      if (!inStore.has(m[1])) violations.push(`report "${m[1]}" (exit 0) is missing from the store`)
    }
  }
  // 3. no job process outlives the plan (the runner stops a completed job's process after graceMs)
  await sleep(reached ? 6_000 : 0)
  const survivors = entries.filter(e => alive(e.pid))
  if (survivors.length) violations.push(`job processes outlived the plan: ${survivors.map(e => `${e.job}#${e.attempt} pid ${e.pid}`).join(", ")}`)
  // ... nor a `concord mcp` server a job started
  const mcpPids = entries.flatMap(e => e.lines.filter(l => /^mcp \d+$/.test(l)).map(l => ({ e, pid: Number(l.slice(4)) })))
  const mcpSurvivors = mcpPids.filter(x => alive(x.pid))
  if (mcpSurvivors.length)
    violations.push(`concord mcp servers outlived the plan: ${mcpSurvivors.map(x => `${x.e.job}#${x.e.attempt}'s pid ${x.pid}`).join(", ")}`)
  for (const x of mcpSurvivors) {
    try {
      process.kill(x.pid, "SIGKILL")
    } catch {}
  }
  for (const e of survivors) {
    try {
      process.kill(-e.pid, "SIGKILL")
    } catch {}
  }
  // 4. states consistent with what happened to the processes; 5. final state = a clean run's
  const plan = readPlan(await ps.loadPlan(id))
  if (plan.status !== "completed") violations.push(`final plan status ${plan.status}, a clean run ends completed`)
  for (const j of plan.jobs) {
    if (j.status !== "completed") violations.push(`job ${j.name} ends ${j.status} (attempt ${j.attempt}), a clean run ends completed`)
    const mine = entries.find(e => e.job === j.name && e.attempt === j.attempt)
    if (j.status === "completed" && !mine) violations.push(`job ${j.name} is completed in attempt ${j.attempt}, which no process ever ran`)
    // (a process stopped by the runner after its completed report cannot always write its ledger line)
    if (j.status === "completed" && mine && !completedReport.has(`${j.name}#${j.attempt}`) && !mine.lines.includes("exit 0")) {
      violations.push(`job ${j.name} is completed in attempt ${j.attempt}, but its process neither reported completed nor exited 0`)
    }
  }
  if (violations.length === 0) rmSync(root, { recursive: true, force: true })
  else log(`kept ${root} for inspection`)
  const viaMcp = entries.filter(e => e.lines.includes("via mcp"))
  const ackedMcp = viaMcp.reduce((n, e) => n + e.lines.filter(l => l.startsWith("report 0 ")).length, 0)
  return { kills, violations, overtimeMs, ms: Date.now() - t0, attempts: byAttempt.size, acked, ackedMcp, mcpServers: mcpPids.length, store: root }
}
