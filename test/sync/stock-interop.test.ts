/**
 * The loss from issue 15: a STOCK automerge-repo (Repo + NodeFSStorageAdapter, which creates a chunk file
 * and only then writes into it, and whose compaction writes a snapshot and then deletes the change chunks
 * it replaces) writes reports into a concord store while long-running concord processes watch it with the
 * CLI's real defaults (`concord status --watch`, DocStore.watch). Nothing may go missing: a watcher must
 * never move away a chunk another process is still writing.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync, readdirSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import { reportDocId } from "../../src/doc/ids.js"
import { readReports } from "../../src/doc/reports.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { BIN, cleanup, concord, createPlan, ROOT, tempDir } from "../helpers/cli.js"

const STOCK = fileURLToPath(new URL("./fixtures/stock-writer.mjs", import.meta.url))
const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))

function stockWriter(store: string, docId: string, tag: string, count: number, gapMs: number) {
  const child = spawn(process.execPath, ["--import", "tsx", STOCK, store, docId, tag, String(count), String(gapMs)], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  })
  let out = ""
  let err = ""
  child.stdout.on("data", d => (out += d))
  child.stderr.on("data", d => (err += d))
  return new Promise<{ code: number | null; out: string; err: string }>(resolve => child.on("close", code => resolve({ code, out, err })))
}

function watcher(store: string, args: string[]): { child: ChildProcess; stderr: () => string; lines: () => number } {
  // no CONCORD_* tuning variables: the CLI's real defaults
  const env: NodeJS.ProcessEnv = { ...process.env, CONCORD_STORE: store }
  for (const k of Object.keys(env)) if (k.startsWith("CONCORD_") && k !== "CONCORD_STORE") delete env[k]
  const child = spawn(process.execPath, [BIN, ...args], { cwd: store, env, stdio: ["ignore", "pipe", "pipe"] })
  let err = ""
  let n = 0
  child.stdout.on("data", d => (n += String(d).split("\n").length - 1))
  child.stderr.on("data", d => (err += d))
  return { child, stderr: () => err, lines: () => n }
}

const PLAN = `name: stock\njobs:\n  - { name: A, run: "true" }\n  - { name: B, run: "true" }\n`

describe("a stock automerge-repo NodeFSStorageAdapter writing into a watched store", () => {
  it("loses nothing: every report the stock peers wrote (and their compactions) ends up in the store", async () => {
    const store = tempDir("concord-stock-")
    dirs.push(store)
    const id = await createPlan(store, PLAN)
    for (const job of ["A", "B"]) {
      expect((await concord(store, ["report", "working", `start ${job}`, "--job", job, "--plan", id])).code).toBe(0)
    }
    const watchers = [watcher(store, ["status", id, "--watch", "--json"]), watcher(store, ["status", id, "--watch", "--json"])]
    try {
      await new Promise(r => setTimeout(r, 1500)) // both watchers are up and have drawn once
      const COUNT = 40
      const runs = await Promise.all([
        stockWriter(store, reportDocId(id, "A"), "a1", COUNT, 12),
        stockWriter(store, reportDocId(id, "B"), "b1", COUNT, 12),
        stockWriter(store, reportDocId(id, "B"), "b2", COUNT, 25),
      ])
      for (const r of runs) {
        expect(r.code, r.err).toBe(0)
        expect(r.out).toMatch(new RegExp(`done ${COUNT}`))
      }
      await new Promise(r => setTimeout(r, 1500)) // the watchers saw the end of it
      for (const w of watchers) {
        expect(w.child.exitCode).toBe(null) // still running
        expect(w.lines()).toBeGreaterThan(1)
      }
    } finally {
      for (const w of watchers) w.child.kill("SIGTERM")
    }
    // A fresh process reads the store: every report is there.
    const ps = new PlanStore(store)
    const msgs = async (job: string) => readReports(await ps.loadReports(id, job)).map(r => r.message)
    const a = await msgs("A")
    const b = await msgs("B")
    const expected = (tag: string) => Array.from({ length: 40 }, (_, i) => `${tag}:${i}`)
    expect(expected("a1").filter(m => !a.includes(m))).toEqual([])
    expect(expected("b1").filter(m => !b.includes(m))).toEqual([])
    expect(expected("b2").filter(m => !b.includes(m))).toEqual([])
    // and nothing sits in quarantine
    const q = path.join(store, "quarantine")
    expect(existsSync(q) ? readdirSync(q) : []).toEqual([])
    const s = await concord(store, ["status", id, "--json"])
    expect(s.code, s.stderr).toBe(0)
  }, 120_000)
})
