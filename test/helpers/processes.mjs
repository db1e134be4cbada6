/**
 * The one harness that runs concord as real OS processes (`concord ARGS`, `concord serve`) against
 * separate stores, for the tests and the benchmark (bench/lib/net-harness.mjs imports it). Plain
 * JavaScript so that `node bench/run.mjs` can load it without a TypeScript loader; the JSDoc types are
 * what the tests' type check sees.
 *
 * Every child started here is killed when this process exits, so a failed run leaves no server behind.
 */
import { spawn } from "node:child_process"
import { mkdirSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

/** The repository root and the `concord` command in it (bin/concord.js runs dist/: build first). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const BIN = path.join(ROOT, "bin/concord.js")

/**
 * @typedef {object} CliResult
 * @property {number | null} code
 * @property {NodeJS.Signals | null} signal
 * @property {string} stdout
 * @property {string} stderr
 * @property {number} ms wall time from spawn to exit
 */

/**
 * @typedef {object} RunOptions
 * @property {NodeJS.ProcessEnv} [env] added to this process's environment (and CONCORD_STORE)
 * @property {string} [cwd] working directory (default: the store)
 * @property {number} [timeoutMs] SIGKILL after this long (default 120 s)
 * @property {number} [delayMs] start this much later
 * @property {(chunk: string) => void} [onStdout] called with each piece of stdout as it arrives
 */

/** Live children, each with the directory it works in. @type {Map<import("node:child_process").ChildProcess, string | undefined>} */
const children = new Map()
let exitHook = false

/**
 * @param {import("node:child_process").ChildProcess} child
 * @param {string | undefined} dir
 */
function track(child, dir) {
  children.set(child, dir && path.resolve(dir))
  child.once("exit", () => children.delete(child))
  if (!exitHook) {
    exitHook = true
    process.once("exit", () => {
      for (const c of children.keys()) {
        try {
          c.kill("SIGKILL")
        } catch {
          // gone
        }
      }
    })
  }
}

/**
 * SIGKILL the children started here that work in `dir` or below it (an orchestrator a test left
 * running, a server); returns how many.
 * @param {string} dir
 */
export function killChildrenIn(dir) {
  const root = path.resolve(dir)
  let n = 0
  for (const [c, where] of children) {
    if (!where || (where !== root && !where.startsWith(root + path.sep))) continue
    try {
      c.kill("SIGKILL")
      n++
    } catch {
      // gone
    }
  }
  return n
}

/**
 * Run `node ARGS` as a child process; resolves when it exits (never rejects for a non-zero exit).
 * @param {string[]} args
 * @param {RunOptions} [opts]
 * @returns {Promise<CliResult>}
 */
export function runNode(args, opts = {}) {
  return new Promise((resolve, reject) => {
    const start = () => {
      const { done } = spawnNode(args, opts)
      done.then(resolve, reject)
    }
    if (opts.delayMs) setTimeout(start, opts.delayMs)
    else start()
  })
}

/**
 * Start `node ARGS`; `done` resolves when it exits, `output()` is what it printed so far.
 * @param {string[]} args
 * @param {RunOptions} [opts]
 */
export function spawnNode(args, opts = {}) {
  const t0 = Date.now()
  const child = spawn(process.execPath, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] })
  track(child, opts.env?.CONCORD_STORE || opts.cwd)
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", d => {
    stdout += d
    opts.onStdout?.(String(d))
  })
  child.stderr.on("data", d => (stderr += d))
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000)
  /** @type {Promise<CliResult>} */
  const done = new Promise((resolve, reject) => {
    child.on("error", e => {
      clearTimeout(timer)
      reject(e)
    })
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 })
    })
  })
  return { child, done, output: () => ({ stdout, stderr }) }
}

/**
 * Run `concord ARGS` with CONCORD_STORE=store; resolves when it exits. Without `cwd` it runs in the
 * store, which is created if missing (with `cwd`, a missing store stays missing).
 * @param {string} store
 * @param {string[]} args
 * @param {RunOptions} [opts]
 * @returns {Promise<CliResult>}
 */
export function runConcord(store, args, opts = {}) {
  if (!opts.cwd) mkdirSync(store, { recursive: true }) // it is the working directory
  return runNode([BIN, ...args], { ...opts, cwd: opts.cwd ?? store, env: { CONCORD_STORE: store, ...opts.env } })
}

/**
 * Start `concord ARGS` with CONCORD_STORE=store; `done` resolves when it exits.
 * @param {string} store
 * @param {string[]} args
 * @param {RunOptions} [opts]
 */
export function spawnConcord(store, args, opts = {}) {
  if (!opts.cwd) mkdirSync(store, { recursive: true }) // it is the working directory
  return spawnNode([BIN, ...args], { ...opts, cwd: opts.cwd ?? store, env: { CONCORD_STORE: store, ...opts.env } })
}

/**
 * @typedef {object} ServerProcess
 * @property {string} url
 * @property {number} port
 * @property {import("node:child_process").ChildProcess} proc
 * @property {() => string} logs everything the server logged so far
 * @property {(signal?: NodeJS.Signals) => Promise<{ code: number | null, signal: NodeJS.Signals | null }>} stop send a signal and wait for the exit
 */

/**
 * Start `concord serve` on 127.0.0.1 (any free port unless given) over `store`.
 * @param {string} store
 * @param {string[]} [extraArgs]
 * @param {{ port?: number, env?: NodeJS.ProcessEnv }} [opts]
 * @returns {Promise<ServerProcess>}
 */
export function startServerProcess(store, extraArgs = [], opts = {}) {
  mkdirSync(store, { recursive: true })
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, "--store", store, "serve", "--port", String(opts.port ?? 0), ...extraArgs], {
      cwd: store,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    })
    track(proc, store)
    let out = ""
    let err = ""
    let started = false
    /** @type {Promise<{ code: number | null, signal: NodeJS.Signals | null }>} */
    const exited = new Promise(r => proc.on("exit", (code, signal) => r({ code, signal })))
    proc.stdout.on("data", d => {
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
    proc.stderr.on("data", d => (err += d))
    proc.on("error", reject)
    void exited.then(r => {
      if (!started) reject(new Error(`concord serve exited (${r.code ?? r.signal}) before listening: ${err}`))
    })
  })
}

/**
 * `concord token add` in `store`; resolves to the token's secret.
 * @param {string} store
 * @param {string} plan
 * @param {string} role
 * @returns {Promise<string>}
 */
export async function addTokenCli(store, plan, role) {
  const r = await runConcord(store, ["token", "add", "--plan", plan, "--role", role, "--json"])
  if (r.code !== 0) throw new Error(`token add failed: ${r.stderr}`)
  return JSON.parse(r.stdout).token
}
