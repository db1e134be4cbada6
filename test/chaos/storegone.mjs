// The store directory deleted under a running orchestrator (`concord run --wait`) whose jobs are running.
// What must hold: no stack trace; the orchestrator does not bring the store back as a skeleton holding
// only the chunks it writes afterwards (a half store that looks like a store); it still stops cleanly on
// SIGTERM (exit 130; its jobs keep running detached, as documented for Ctrl-C, and are killed here).
// The store vanishes from its path at once (a rename): our own rm cannot race the writers, and the moved
// directory is removed once every process is gone.
import { spawn, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

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
    writeFileSync(
      path.join(root, "plan.yaml"),
      `name: gone\ngraceMs: 300\njobs:\n  - { name: A, run: "echo $$ >> ${pids}; exec sleep 120" }\n  - { name: B, run: "echo $$ >> ${pids}; exec sleep 120" }\n`
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
      for (let t = 0; jobPids().length < 2 && t < 1200; t++) await sleep(50)
      if (jobPids().length < 2) throw new Error("the jobs did not start within 60 s")
      renameSync(store, gone)
      const end = await Promise.race([exited, sleep(8000).then(() => undefined)])
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
