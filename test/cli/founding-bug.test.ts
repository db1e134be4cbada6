/**
 * The founding bug, with real OS processes on one store: one process marks A failed and pauses the plan
 * at on_error from a view read before the others wrote, while two `concord report completed` processes
 * finish B and C at the same moment. 20 runs with random jitter; every run must come out right.
 */
import { cpSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { cleanup, concord, createPlan, ROOT, runNode, tempDir } from "../helpers/cli.js"

const STEP = path.join(ROOT, "test/fixtures/plan-step.mjs")
const PLAN = `name: founding-bug
jobs:
  - { name: A, run: "exit 1" }
  - { name: B, run: "true" }
  - { name: C, run: "true" }
`
const dirs: string[] = []

async function statusAsync(store: string, id: string) {
  const r = await concord(store, ["status", id, "--json"])
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout)
}
afterAll(() => dirs.forEach(cleanup))

describe("founding bug across OS processes", () => {
  it("20 of 20 runs: A failed, B and C completed, plan paused at on_error", async () => {
    // One plan with A, B and C running, created once; each run races on its own copy of that store.
    const template = tempDir()
    dirs.push(template)
    const id = await createPlan(template, PLAN)
    const start = await runNode([STEP, template, id, "start", "A", "B", "C"])
    expect(start.code, start.stderr).toBe(0)
    const outcomes: string[] = []
    const oneRun = async () => {
      const store = tempDir()
      dirs.push(store)
      cpSync(template, store, { recursive: true })

      // The orchestrator reads the plan first, and writes 0-400 ms later from that stale view, while
      // the reporters (started once it has read) write B and C completed.
      let loaded!: () => void
      const hasLoaded = new Promise<void>(r => (loaded = r))
      const orchestrator = runNode([STEP, store, id, "fail-and-pause", "A", String(Math.floor(Math.random() * 400))], {
        onStdout: s => s.includes("loaded") && loaded(),
      })
      await hasLoaded
      const reporters = ["B", "C"].map(job =>
        concord(store, ["report", "completed", `${job} done`], {
          env: { CONCORD_PLAN: id, CONCORD_JOB: job, CONCORD_ATTEMPT: "1" },
          delayMs: Math.floor(Math.random() * 60),
        })
      )
      const results = await Promise.all([orchestrator, ...reporters])
      for (const r of results) expect(r.code, r.stderr).toBe(0)
      expect(results[0].stdout).toMatch(/^loaded running,running,running/)

      const s = await statusAsync(store, id)
      const jobs = Object.fromEntries(s.jobs.map((j: any) => [j.name, j.status]))
      outcomes.push(`${jobs.A}/${jobs.B}/${jobs.C}/${s.status}/${s.checkpoint}`)
      expect(jobs).toEqual({ A: "failed", B: "completed", C: "completed" })
      expect([s.status, s.checkpoint, s.checkpointContext.jobName, s.checkpointContext.failureKind]).toEqual(["paused", "on_error", "A", "job_failed"])
      expect(s.counts).toEqual({ failed: 1, completed: 2 })
    }
    // Four runs at a time, on their own stores: more scheduling noise, less wall time.
    for (let batch = 0; batch < 5; batch++) await Promise.all([oneRun(), oneRun(), oneRun(), oneRun()])
    expect(outcomes).toHaveLength(20)
    expect(new Set(outcomes)).toEqual(new Set(["failed/completed/completed/paused/on_error"]))
  }, 180_000)
})
