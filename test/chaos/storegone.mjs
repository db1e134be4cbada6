// The store directory deleted under a running orchestrator (`concord run --wait`) whose jobs are running
// and reporting (`concord report` in a loop, through the orchestrator's endpoint or the store, racing the
// moment the store goes). What must hold: no stack trace; neither the orchestrator nor a job's report
// brings the store back as a skeleton holding only the chunks written afterwards (a half store that looks
// like a store); every report whose command exited 0 is in the moved store, and a report made after the
// store went exits non-zero saying the store is gone; the orchestrator exits 1 (plan gone) or stops
// cleanly on SIGTERM (130; its jobs keep running detached, as documented for Ctrl-C, and are killed here).
// The store vanishes from its path at once (a rename): our own rm cannot race the writers, and the moved
// directory is read, then removed once every process is gone.
import { spawn, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT_ = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const { PlanStore, readReports } = await import(path.join(ROOT_, "dist/src/index.js"))

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const BIN = path.join(ROOT, "bin/concord.js")
const STACK = /\n\s+at |TypeError|RangeError|ReferenceError|Unhandled|node:internal/
const sleep = ms => new Promise(r => setTimeout(r, ms))
const alive = pid => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export async function storeGoneUnderRun({ rounds = 1, log = () => {} } = {}) {
  const violations = []
  for (let round = 0; round < rounds; round++) {
    const root = mkdtempSync(path.join(os.tmpdir(), "concord-gone-run-"))
    const store = path.join(root, "store")
    const gone = `${store}.gone`
    mkdirSync(store)
    const pids = path.join(root, "pids")
    const env = { ...process.env, CONCORD_STORE: store }
    for (const k of Object.keys(env)) if (k.startsWith("CONCORD_") && k !== "CONCORD_STORE") delete env[k]
    // each job reports every ~100 ms until the harness says stop, and notes each report's exit code
    const reporter = job =>
      `echo $$ >> ${pids}; i=0; while [ ! -f ${root}/stop ]; do i=$((i+1)); ` +
      `concord report progress ${job}$i 2>> ${root}/${job}.err; echo "$? ${job}$i" >> ${root}/${job}.acks; sleep 0.1; done; exec sleep 120`
    writeFileSync(
      path.join(root, "plan.yaml"),
      `name: gone\ngraceMs: 300\njobs:\n  - { name: A, run: '${reporter("A")}' }\n  - { name: B, run: '${reporter("B")}' }\n`
    )
    const c = spawnSync(process.execPath, [BIN, "plan", "create", path.join(root, "plan.yaml"), "--json"], { env, cwd: root, encoding: "utf8" })
    if (c.status !== 0) throw new Error(`plan create: ${c.stderr}`)
    const id = JSON.parse(c.stdout).id
    const run = spawn(process.execPath, [BIN, "run", id, "--wait"], { env, cwd: root, stdio: ["ignore", "pipe", "pipe"] })
    let err = ""
    run.stderr.on("data", d => (err += d))
    run.stdout.on("data", () => {})
    const exited = new Promise(r => run.on("close", (code, signal) => r({ code, signal })))
    const jobPids = () => (existsSync(pids) ? readFileSync(pids, "utf8").split("\n").filter(Boolean).map(Number) : [])
    try {
      const acks = job =>
        existsSync(path.join(root, `${job}.acks`))
          ? readFileSync(path.join(root, `${job}.acks`), "utf8")
              .split("\n")
              .filter(Boolean)
          : []
      for (let t = 0; (jobPids().length < 2 || acks("A").length < 2 || acks("B").length < 2) && t < 1200; t++) await sleep(50)
      if (jobPids().length < 2) throw new Error("the jobs did not start within 60 s")
      await sleep(Math.random() * 300) // the rename lands anywhere in a report
      renameSync(store, gone)
      const at = { A: acks("A").length, B: acks("B").length }
      const end = await Promise.race([exited, sleep(8000).then(() => undefined)])
      for (let t = 0; t < 200 && !["A", "B"].every(j => acks(j).length > at[j] + 2); t++) await sleep(50)
      writeFileSync(path.join(root, "stop"), "")
      if (existsSync(store)) {
        const what = []
        const walk = (d, depth) => {
          for (const e of readdirSync(d, { withFileTypes: true })) {
            what.push(path.relative(store, path.join(d, e.name)))
            if (e.isDirectory() && depth < 4) walk(path.join(d, e.name), depth + 1)
          }
        }
        walk(store, 0)
        violations.push(
          `the orchestrator brought the deleted store back as a skeleton of ${what.length} entries (${what.filter(p => /snapshot\/|incremental\//.test(p)).length} chunk files, ` +
            `no plans index: ${!what.includes("plans")}) instead of stopping its writes with a clear error`
        )
      }
      // every acknowledged report is in the moved store; the reports made once the store was gone failed,
      // saying so (a report racing the rename may land in the moved store and be acknowledged)
      const moved = new PlanStore(gone, { onWarning: () => {} })
      for (const job of ["A", "B"]) {
        const stored = new Set(readReports(await moved.loadReports(id, job)).map(r => String(r.message)))
        const lines = acks(job).map(l => l.split(" "))
        for (const [code, msg] of lines) if (code === "0" && !stored.has(msg)) violations.push(`report ${msg} (exit 0) is missing from the moved store`)
        const after = lines.slice(at[job] + 1)
        if (after.length === 0) violations.push(`job ${job} made no report after the store went`)
        for (const [code, msg] of after) if (code === "0" && !stored.has(msg)) violations.push(`report ${msg} exited 0 after the store went, but is nowhere`)
        if (after.some(([code]) => code !== "0" && code !== "1"))
          violations.push(`a report after the store went exited ${after.find(([c]) => c !== "0" && c !== "1")[0]} (expected 1)`)
        const err = existsSync(path.join(root, `${job}.err`)) ? readFileSync(path.join(root, `${job}.err`), "utf8") : ""
        if (STACK.test(err)) violations.push(`job ${job}'s concord report printed a stack trace: ${err.slice(0, 300)}`)
        for (const l of err.split("\n").filter(Boolean)) {
          if (!/^concord: store .* is gone: its directory does not exist|^concord: plan .* is gone/.test(l))
            violations.push(`job ${job}'s report said: ${l.slice(0, 200)}`)
        }
      }
      if (existsSync(store)) violations.push("a job's report brought the deleted store back")
      if (!end) run.kill("SIGTERM")
      const r = end ?? (await Promise.race([exited, sleep(30_000).then(() => undefined)]))
      if (!r) violations.push("the orchestrator did not exit within 30 s of SIGTERM with its store gone")
      else if (![0, 1, 130].includes(r.code))
        violations.push(`the orchestrator exited ${r.code ?? r.signal} with its store gone (expected 1, or 130 on SIGTERM)`)
      if (STACK.test(err)) violations.push(`the orchestrator printed a stack trace: ${err.slice(0, 300)}`)
      for (const l of err.split("\n").filter(Boolean)) if (!/^concord: /.test(l)) violations.push(`a stderr line that is not concord's own: ${l.slice(0, 200)}`)
    } finally {
      run.kill("SIGKILL")
      await exited
      for (const p of jobPids()) {
        try {
          if (alive(p)) process.kill(p, "SIGKILL")
        } catch {}
      }
      rmSync(root, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 })
    }
    log(`store gone under run, round ${round + 1}: ${violations.length} violation(s) so far`)
  }
  return { violations: [...new Set(violations)], rounds }
}
