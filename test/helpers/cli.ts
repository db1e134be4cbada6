/** Run the real `concord` binary (compiled JS) as an OS process against a temporary store. */
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const BIN = path.join(ROOT, "bin/concord.js")

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export function tempDir(prefix = "concord-test-"): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix))
}

export function cleanup(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
}

/** Run concord synchronously. */
export function concord(store: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): RunResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? store,
    env: { ...process.env, CONCORD_STORE: store, ...opts.env },
    encoding: "utf8",
    timeout: 60_000,
  })
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
}

/** Run concord as a child process, resolving when it exits. */
export function concordAsync(
  store: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; delayMs?: number } = {}
): Promise<RunResult> {
  return runNode([BIN, ...args], { ...opts, env: { CONCORD_STORE: store, ...opts.env }, cwd: opts.cwd ?? store })
}

/** Run `node <args>` as a child process (after an optional delay), resolving when it exits. */
export function runNode(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; delayMs?: number; onStdout?: (chunk: string) => void } = {}
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const start = () => {
      const child = spawn(process.execPath, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env } })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", d => {
        stdout += d
        opts.onStdout?.(String(d))
      })
      child.stderr.on("data", d => (stderr += d))
      child.on("error", reject)
      child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
    }
    if (opts.delayMs) setTimeout(start, opts.delayMs)
    else start()
  })
}

export function writePlan(dir: string, name: string, yaml: string): string {
  const file = path.join(dir, name)
  writeFileSync(file, yaml)
  return file
}

export function createPlan(store: string, yaml: string): string {
  const file = writePlan(store, `plan-${Math.random().toString(36).slice(2)}.yaml`, yaml)
  const r = concord(store, ["plan", "create", file, "--json"])
  if (r.code !== 0) throw new Error(`plan create failed: ${r.stderr}`)
  return JSON.parse(r.stdout).id
}

export function statusJson(store: string, plan?: string): any {
  const r = concord(store, ["status", ...(plan ? [plan] : []), "--json"])
  if (r.code !== 0) throw new Error(`status failed (${r.code}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

export async function createPlanAsync(store: string, yaml: string): Promise<string> {
  const file = writePlan(store, `plan-${Math.random().toString(36).slice(2)}.yaml`, yaml)
  const r = await concordAsync(store, ["plan", "create", file, "--json"])
  if (r.code !== 0) throw new Error(`plan create failed: ${r.stderr}`)
  return JSON.parse(r.stdout).id
}
