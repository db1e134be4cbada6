/**
 * Run the real `concord` binary (compiled JS) as an OS process against a temporary store. Every helper
 * is asynchronous: a synchronous spawn blocks the vitest worker's event loop while the child runs, and on
 * a loaded machine its RPC with the main process then times out ("Timeout calling onTaskUpdate").
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { killJobProcesses, stopJobsAtExit } from "./jobs.js"
import { type CliResult, ROOT, runConcord, runNode } from "./processes.mjs"

export { BIN, ROOT } from "./processes.mjs"
export { runNode }

export type RunResult = CliResult

/** A temporary directory; job processes that plans stored in it start are stopped at exit at the latest. */
export function tempDir(prefix = "concord-test-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  stopJobsAtExit(dir)
  return dir
}

/** Stop the job processes (and runners, servers) a test started in `dir`, then remove it. */
export function cleanup(dir: string): void {
  killJobProcesses(dir)
  // a process killed just now may still be closing files in it
  rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 })
}

/** Run `concord ARGS` with CONCORD_STORE=store (in `store` unless `cwd`), resolving when it exits. */
export function concord(
  store: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; delayMs?: number; timeoutMs?: number } = {}
): Promise<RunResult> {
  return runConcord(store, args, opts)
}

export function writePlan(dir: string, name: string, yaml: string): string {
  const file = path.join(dir, name)
  writeFileSync(file, yaml)
  return file
}

export async function createPlan(store: string, yaml: string): Promise<string> {
  const file = writePlan(store, `plan-${Math.random().toString(36).slice(2)}.yaml`, yaml)
  const r = await concord(store, ["plan", "create", file, "--json"])
  if (r.code !== 0) throw new Error(`plan create failed: ${r.stderr}`)
  return JSON.parse(r.stdout).id
}

export async function statusJson(store: string, plan?: string): Promise<any> {
  const r = await concord(store, ["status", ...(plan ? [plan] : []), "--json"])
  if (r.code !== 0) throw new Error(`status failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

let installs = 0
/**
 * An installed copy of concord under `dir` (bin/, dist/cli/, package.json, the checkout's node_modules),
 * its dist/cli/ changed by `spoil` (start-up files gone wrong); returns its bin/concord.js.
 */
export function spoiledInstall(dir: string, spoil: (cli: string) => void): string {
  const root = path.join(dir, `install-${++installs}`)
  mkdirSync(path.join(root, "dist"), { recursive: true })
  cpSync(path.join(ROOT, "bin"), path.join(root, "bin"), { recursive: true })
  cpSync(path.join(ROOT, "dist", "cli"), path.join(root, "dist", "cli"), { recursive: true })
  cpSync(path.join(ROOT, "package.json"), path.join(root, "package.json"))
  symlinkSync(path.join(ROOT, "node_modules"), path.join(root, "node_modules"), "dir")
  spoil(path.join(root, "dist", "cli"))
  return path.join(root, "bin", "concord.js")
}
