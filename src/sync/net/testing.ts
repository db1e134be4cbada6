/**
 * Helpers to exercise sync with real OS processes: start `concord serve` as a child process, run CLI
 * commands against separate stores, and the offline-convergence benchmark (`benchOfflineConvergence`)
 * that both the test suite and bench/ call.
 */
import * as A from "@automerge/automerge"
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { reportDocId } from "../../doc/ids.js"
import { readPlan, updateAttempt } from "../../doc/plan.js"
import { appendReport, reportsGenesis, type ReportsDocument } from "../../doc/reports.js"
import { parsePlanSpec } from "../../doc/spec.js"
import { PlanStore } from "../store/PlanStore.js"

/** The repository root (the directory whose package.json is concord's). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const pkg = path.join(dir, "package.json")
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, "utf8")).bin?.concord) return dir // the package that ships the concord command
      } catch {
        // keep looking
      }
    }
    const up = path.dirname(dir)
    if (up === dir) throw new Error("cannot find concord's package.json")
    dir = up
  }
}

export function concordBin(): string {
  return path.join(packageRoot(), "bin", "concord.js")
}

/** Children started here are killed when this process exits, so a failed test leaves no server behind. */
const children = new Set<ChildProcess>()
let exitHook = false
function track(child: ChildProcess): void {
  children.add(child)
  child.once("exit", () => children.delete(child))
  if (!exitHook) {
    exitHook = true
    process.once("exit", () => {
      for (const c of children) {
        try {
          c.kill("SIGKILL")
        } catch {
          // gone
        }
      }
    })
  }
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

/** Run `concord ARGS` with CONCORD_STORE=store as a child process. */
export function runConcord(store: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliResult> {
  return spawnConcord(store, args, opts).done
}

/** Start `concord ARGS` with CONCORD_STORE=store; `done` resolves when it exits. */
export function spawnConcord(
  store: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}
): { child: ChildProcess; done: Promise<CliResult>; output(): { stdout: string; stderr: string } } {
  mkdirSync(store, { recursive: true })
  const t0 = Date.now()
  const child = spawn(process.execPath, [concordBin(), ...args], {
    cwd: store,
    env: { ...process.env, CONCORD_STORE: store, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  })
  track(child)
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", d => (stdout += d))
  child.stderr!.on("data", d => (stderr += d))
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000)
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on("error", reject)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 })
    })
  })
  return { child, done, output: () => ({ stdout, stderr }) }
}

export interface ServerProcess {
  url: string
  port: number
  proc: ChildProcess
  /** everything the server logged so far */
  logs(): string
  /** send a signal and wait for the exit */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Start `concord serve` on 127.0.0.1 (any free port unless given) over `store`. */
export function startServerProcess(store: string, extraArgs: string[] = [], opts: { port?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ServerProcess> {
  mkdirSync(store, { recursive: true })
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [concordBin(), "--store", store, "serve", "--port", String(opts.port ?? 0), ...extraArgs], {
      cwd: store,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    })
    track(proc)
    let out = ""
    let err = ""
    let started = false
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(r => proc.on("exit", (code, signal) => r({ code, signal })))
    proc.stdout!.on("data", d => {
      out += d
      const m = /listening on (\S+)/.exec(out)
      if (m && !started) {
        started = true
        const url = m[1]
        resolve({
          url,
          port: Number(new URL(url).port),
          proc,
          logs: () => err,
          stop: async (signal = "SIGTERM") => {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
            return exited
          },
        })
      }
    })
    proc.stderr!.on("data", d => (err += d))
    proc.on("error", reject)
    void exited.then(r => {
      if (!started) reject(new Error(`concord serve exited (${r.code ?? r.signal}) before listening: ${err}`))
    })
  })
}

export async function addTokenCli(store: string, plan: string, role: string): Promise<string> {
  const r = await runConcord(store, ["token", "add", "--plan", plan, "--role", role, "--json"])
  if (r.code !== 0) throw new Error(`token add failed: ${r.stderr}`)
  return JSON.parse(r.stdout).token as string
}

export interface OfflineBenchOptions {
  /** Automerge changes each of the two peers makes while offline. Default 1000. */
  changesPerPeer?: number
  /** Keep the temporary stores (printed in the result) instead of deleting them. */
  keep?: boolean
  /** Progress lines. */
  log?: (line: string) => void
}

export interface OfflineBenchResult {
  changesPerPeer: number
  /** time of the three `concord sync` runs that bring A, server and B together (A push, B both ways, A pull) */
  convergeMs: number
  /** each of those runs (including ~0.2-0.4 s of process start-up each) */
  syncMs: { aPush: number; bBoth: number; aPull: number }
  /** all three stores have identical heads for every document, and every change of both peers */
  converged: boolean
  /** changes in the plan document and report logs on the server afterwards */
  serverChanges: number
  dirs?: { a: string; b: string; server: string }
}

const BENCH_PLAN = `name: offline-bench
jobs:
  - { name: a, run: "true" }
  - { name: b, run: "true" }
  - { name: shared, run: "true" }
`

/**
 * Two peers (separate stores) share a plan through a `concord serve` process, go offline, each make
 * `changesPerPeer` changes (half heartbeats of its own job in the plan document, half reports: to its
 * own job's log and to one log both write), then reconnect with `concord sync` (A, B, A). Returns the
 * time until all three stores have everything, and whether they do.
 */
export async function benchOfflineConvergence(opts: OfflineBenchOptions = {}): Promise<OfflineBenchResult> {
  const n = opts.changesPerPeer ?? 1000
  const log = opts.log ?? (() => {})
  const root = mkdtempSync(path.join(os.tmpdir(), "concord-offline-"))
  const dirs = { a: path.join(root, "a"), b: path.join(root, "b"), server: path.join(root, "server") }
  let server: ServerProcess | undefined
  try {
    const a = new PlanStore(dirs.a)
    const spec = parsePlanSpec(BENCH_PLAN, "offline-bench.yaml")
    const { id } = await a.createPlan(spec, root, { by: "bench@a", now: Date.now() })
    const token = await addTokenCli(dirs.server, "*", "admin")
    server = await startServerProcess(dirs.server)
    const sync = async (dir: string) => {
      const r = await runConcord(dir, ["sync", server!.url, "--token", token, "--quiet", "--timeout", "300"], { timeoutMs: 320_000 })
      if (r.code !== 0) throw new Error(`concord sync (${path.basename(dir)}) failed: ${r.stderr}`)
      return r.ms
    }
    await sync(dirs.a)
    await sync(dirs.b)
    log(`plan ${id} on both peers; writing ${n} offline changes on each`)

    const offline = async (dir: string, job: "a" | "b") => {
      const store = new PlanStore(dir)
      let plan = await store.loadPlan(id)
      const logs = new Map<string, ReportsDocument>()
      for (const j of [job, "shared"]) logs.set(j, ((await store.loadReports(id, j)) ?? reportsGenesis(id, j)) as ReportsDocument)
      for (let i = 0; i < n; i++) {
        const ctx = { by: `job:${job}#1@bench`, now: Date.now() + i }
        if (i % 2 === 0) plan = updateAttempt(plan, job, 1, { heartbeatAt: ctx.now }, ctx, `heartbeat ${i}`)
        else {
          const j = i % 4 === 1 ? job : "shared"
          logs.set(j, appendReport(logs.get(j)!, { status: "progress", message: `${job}-${i}`, progress: i % 101, attempt: 1 }, ctx))
        }
      }
      await store.docs.save(id, plan)
      for (const [j, d] of logs) await store.docs.save(reportDocId(id, j), d)
    }
    await offline(dirs.a, "a")
    await offline(dirs.b, "b")

    const aPush = await sync(dirs.a)
    const bBoth = await sync(dirs.b)
    const aPull = await sync(dirs.a)
    const convergeMs = aPush + bBoth + aPull
    log(`synced: A push ${aPush} ms, B both ways ${bBoth} ms, A pull ${aPull} ms`)

    // Check: identical heads everywhere, and everything both peers wrote is there.
    const ids = [id, ...["a", "b", "shared"].map(j => reportDocId(id, j))]
    let converged = true
    let serverChanges = 0
    const stores = [dirs.a, dirs.b, dirs.server].map(d => new PlanStore(d))
    for (const docId of ids) {
      const docs = await Promise.all(stores.map(s => s.docs.load<unknown>(docId)))
      if (docs.some(d => !d)) {
        converged = false
        continue
      }
      const heads = docs.map(d => A.getHeads(d!).sort().join(","))
      if (new Set(heads).size !== 1) converged = false
      serverChanges += A.getAllChanges(docs[2]!).length
    }
    const plan = readPlan(await stores[2].loadPlan(id))
    const reports = await stores[2].loadAllReports(id, ["a", "b", "shared"])
    const count = (j: string) => (reports.get(j)?.reports.length ?? 0) as number
    // each peer: heartbeats for even i, reports to its own log for i % 4 === 1, to the shared one for i % 4 === 3
    let own = 0
    let shared = 0
    for (let i = 0; i < n; i++) {
      if (i % 4 === 1) own++
      if (i % 4 === 3) shared++
    }
    if (count("a") !== own || count("b") !== own || count("shared") !== 2 * shared) converged = false
    if (!plan.jobs.find(j => j.name === "a")?.current.heartbeatAt || !plan.jobs.find(j => j.name === "b")?.current.heartbeatAt) converged = false
    return { changesPerPeer: n, convergeMs, syncMs: { aPush, bBoth, aPull }, converged, serverChanges, ...(opts.keep ? { dirs } : {}) }
  } finally {
    if (server) await server.stop("SIGTERM")
    if (!opts.keep) rmSync(root, { recursive: true, force: true })
  }
}
