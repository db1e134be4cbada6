/**
 * Crash safety with real processes and real files: a writer SIGKILLed at random moments during saves,
 * 50 times; afterwards the store loads and every report whose write had been acknowledged is there.
 * Then damaged chunks: a truncated and a garbage chunk file; commands still work, warn, lose nothing else.
 */
import { spawn } from "node:child_process"
import { existsSync, readdirSync, readFileSync, statSync, truncateSync, utimesSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { reportDocId } from "../../src/doc/ids.js"
import { readReports } from "../../src/doc/reports.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { cleanup, concord, createPlan, ROOT, runNode, tempDir } from "../helpers/cli.js"

const STEP = path.join(ROOT, "test/fixtures/plan-step.mjs")
const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))

const PLAN = `name: crash\njobs:\n  - { name: A, run: "true" }\n  - { name: B, run: "true" }\n`

function docDir(store: string, id: string): string {
  return path.join(store, id.slice(0, 2), id.slice(2))
}

/** Start a writer that appends reports forever; SIGKILL it `ms` after its first write. Returns acked messages. */
function writeUntilKilled(store: string, id: string, job: string, ms: number, round: number, op = "reports"): Promise<string[]> {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [STEP, store, id, op, job, "100000", `r${round}`], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let timer: NodeJS.Timeout | undefined
    // Kill at a random moment once the writer is saving (after its first acknowledged write).
    child.stdout.on("data", d => {
      out += d
      timer ??= setTimeout(() => child.kill("SIGKILL"), ms)
    })
    child.stderr.on("data", d => (out += `\nERR ${d}`))
    child.on("close", () => {
      clearTimeout(timer)
      // Only complete lines are acknowledgements: "ok I" was printed after the write was durable.
      const acked = out
        .split("\n")
        .filter(l => /^ok \d+$/.test(l))
        .map(l => `r${round}-${l.slice(3)}`)
      resolve(acked)
    })
  })
}

describe("crash safety", () => {
  it("50 SIGKILLs at random moments during saves lose no acknowledged report", async () => {
    const store = tempDir()
    dirs.push(store)
    const id = await createPlan(store, PLAN)
    const acked: string[] = []
    for (let round = 0; round < 50; round++) {
      acked.push(...(await writeUntilKilled(store, id, "A", Math.floor(Math.random() * 120), round)))
      // A fresh process (no cache) must find every acknowledged report.
      const present = new Set(readReports(await new PlanStore(store, { onWarning: () => {} }).loadReports(id, "A")).map(r => r.message))
      const missing = acked.filter(m => !present.has(m))
      expect(missing, `round ${round}`).toEqual([])
    }
    expect(acked.length).toBeGreaterThan(50)
    const s = await concord(store, ["status", id, "--json"])
    expect(s.code, s.stderr).toBe(0)
    // Nothing half-written stays behind in the documents' directories.
    const leftovers = readdirSync(path.join(docDir(store, reportDocId(id, "A")), "incremental")).filter(f => f.includes("tmp"))
    expect(leftovers).toEqual([])
  }, 240_000)

  it("a long-lived (live) writer appending in place, SIGKILLed 12 times at random moments, loses no acknowledged report", async () => {
    const store = tempDir()
    dirs.push(store)
    const id = await createPlan(store, PLAN)
    const acked: string[] = []
    for (let round = 0; round < 12; round++) {
      acked.push(...(await writeUntilKilled(store, id, "B", Math.floor(Math.random() * 200), round, "reports-live")))
      const present = readReports(await new PlanStore(store, { onWarning: () => {} }).loadReports(id, "B")).map(r => r.message)
      expect(
        acked.filter(m => !present.includes(m)),
        `round ${round}`
      ).toEqual([])
      expect(new Set(present).size, `round ${round}: no report twice`).toBe(present.length)
    }
    expect(acked.length).toBeGreaterThan(12)
    const s = await concord(store, ["status", id, "--json"])
    expect(s.code, s.stderr).toBe(0)
  }, 240_000)

  it("a truncated chunk and a garbage chunk: commands still work, warn, and lose no other change", async () => {
    const store = tempDir()
    dirs.push(store)
    const id = await createPlan(store, PLAN)
    for (let i = 0; i < 5; i++) expect((await concord(store, ["report", "progress", `m${i}`, "--job", "B", "--plan", id])).code).toBe(0)
    const inc = path.join(docDir(store, reportDocId(id, "B")), "incremental")
    const files = readdirSync(inc)
      .map(f => path.join(inc, f))
      .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs)
    const victim = files[files.length - 1]
    const victimReport = readFileSync(victim)
    truncateSync(victim, Math.floor(victimReport.length / 2))
    const garbage = path.join(inc, "0".repeat(64))
    writeFileSync(garbage, Buffer.from("this is not an automerge chunk"))

    // Fresh damage may be a file another (non-atomic) writer is still writing: skipped, left in place.
    const fresh = await concord(store, ["status", id, "--json"])
    expect(fresh.code, fresh.stderr).toBe(0)
    expect(fresh.stderr).toMatch(/skipping damaged Automerge chunk/)
    expect(existsSync(path.join(store, "quarantine"))).toBe(false)

    // Damage that stayed for the grace period (60 s by default) is quarantined, and status says so.
    const old = new Date(Date.now() - 120_000)
    for (const f of [victim, garbage]) utimesSync(f, old, old)
    const s = await concord(store, ["status", id, "--json"])
    expect(s.code, s.stderr).toBe(0)
    expect(s.stderr).toMatch(/warning/i)
    expect(s.stderr).toMatch(/moved it to .*quarantine/i)
    expect(s.stderr).toMatch(/2 quarantined chunk files? in .*run "concord doctor"/)
    const h = JSON.parse((await concord(store, ["history", id, "--json"])).stdout).filter((e: any) => e.doc === "reports:B")
    // Only the report in the truncated chunk is gone; the other four are intact.
    expect(h.map((e: any) => e.did)).toHaveLength(4)
    // New writes work and a later compaction keeps everything.
    const bulk = await runNode([STEP, store, id, "reports", "B", "75", "bulk"])
    expect(bulk.code, bulk.stderr).toBe(0)
    const after = readReports(await new PlanStore(store).loadReports(id, "B")).map(r => r.message)
    expect(after).toHaveLength(4 + 75)
    expect(after.filter(m => m.startsWith("m"))).toHaveLength(4)
    expect(readdirSync(path.join(store, "quarantine")).length).toBe(2)
  }, 120_000)
})
