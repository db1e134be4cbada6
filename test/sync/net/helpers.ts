/** Helpers for the sync tests: separate stores per simulated machine, real `concord` processes. */
import * as A from "@automerge/automerge"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { afterAll, expect } from "vitest"
import { reportDocId } from "../../../src/doc/ids.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { killJobProcesses, stopJobsAtExit } from "../../helpers/jobs.js"
import { type Poll, until as untilOnce } from "../../helpers/until.js"
import { runConcord, startServerProcess as startServer, type CliResult, type ServerProcess } from "../../helpers/processes.mjs"

export { addTokenCli, runConcord, spawnConcord, type ServerProcess } from "../../helpers/processes.mjs"

/** Servers started by this test file; all stopped after it, whatever happened. */
const servers: ServerProcess[] = []
afterAll(async () => {
  await Promise.all(servers.map(s => s.stop("SIGKILL")))
})

export async function startServerProcess(...args: Parameters<typeof startServer>): Promise<ServerProcess> {
  const s = await startServer(...args)
  servers.push(s)
  return s
}

export function tempRoot(prefix = "concord-net-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  stopJobsAtExit(dir)
  return dir
}

/** Stop the job processes (and runners, servers) a test started in `dir`, then remove it. */
export function rm(dir: string): void {
  killJobProcesses(dir)
  // a process killed just now may still be closing files in it
  rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 })
}

export const FOUNDING_PLAN = `name: founding-bug
jobs:
  - { name: A, run: "exit 1" }
  - { name: B, run: "true" }
  - { name: C, run: "true" }
`

export async function createPlanCli(store: string, yaml: string, name = "plan.yaml"): Promise<string> {
  const file = path.join(path.dirname(store), `${path.basename(store)}-${name}`)
  writeFileSync(file, yaml)
  const r = await runConcord(store, ["plan", "create", file, "--json"])
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout).id
}

export async function ok(store: string, args: string[], env?: NodeJS.ProcessEnv): Promise<CliResult> {
  const r = await runConcord(store, args, { env })
  expect(r.code, `concord ${args.join(" ")}\n${r.stderr}`).toBe(0)
  return r
}

export async function statusJson(store: string, id: string): Promise<any> {
  const r = await ok(store, ["status", id, "--json"])
  return JSON.parse(r.stdout)
}

export function jobStatuses(s: any): Record<string, string> {
  return Object.fromEntries(s.jobs.map((j: any) => [j.name, j.status]))
}

/** Heads (sorted, joined) of the plan and its report logs in a store: equal strings = same changes. */
export async function planHeads(store: string, id: string, jobs: string[]): Promise<Record<string, string>> {
  const s = new PlanStore(store, { onWarning: () => {} })
  const out: Record<string, string> = {}
  for (const docId of [id, ...jobs.map(j => reportDocId(id, j))]) {
    const d = await s.docs.load<unknown>(docId)
    out[docId] = d ? A.getHeads(d).sort().join(",") : "none"
  }
  return out
}

/** Poll until fn() returns truthy (or throw after timeoutMs), every `everyMs` (100 unless a moment matters). */
export const until = <T>(what: string, fn: Poll<T>, timeoutMs = 20_000, everyMs = 100) => untilOnce(what, fn, timeoutMs, everyMs)
