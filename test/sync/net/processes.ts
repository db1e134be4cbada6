/**
 * Test harness: exercise sync with real OS processes: start `concord serve` as a child process and run
 * CLI commands against separate stores. (bench/ has its own copy in bench/lib/net-harness.mjs, with the
 * offline-convergence benchmark.)
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdirSync, readFileSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

/** The repository root (the directory whose package.json is concord's). */
function packageRoot(): string {
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

function concordBin(): string {
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
