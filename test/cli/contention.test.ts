/** Many OS processes writing one store at once lose nothing. */
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { cleanup, concord, createPlan, ROOT, runNode, tempDir } from "../helpers/cli.js"

const STEP = path.join(ROOT, "test/fixtures/plan-step.mjs")
const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))

function planOf(n: number): string {
  return `name: contention\nmaxParallel: 16\njobs:\n${Array.from({ length: n }, (_, i) => `  - { name: j${i}, run: "true" }`).join("\n")}\n`
}

describe("contention", () => {
  it("16 processes x 25 reports, each for its own job, at once: all 400 present", async () => {
    const store = tempDir()
    dirs.push(store)
    const id = await createPlan(store, planOf(16))
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => runNode([STEP, store, id, "reports", `j${i}`, "25"])))
    for (const r of results) expect(r.code, r.stderr).toBe(0)
    const h = await concord(store, ["history", id, "--json"])
    expect(h.code, h.stderr).toBe(0)
    const reports = JSON.parse(h.stdout).filter((e: any) => e.doc.startsWith("reports:"))
    expect(reports).toHaveLength(400)
    // And every job's last report is its 25th.
    const s = JSON.parse((await concord(store, ["status", id, "--json"])).stdout)
    for (const j of s.jobs) expect(j.lastReport.message).toBe(`${j.name}-24`)
  }, 120_000)

  it("concurrent `concord report` commands on one job: every report kept", async () => {
    const store = tempDir()
    dirs.push(store)
    const id = await createPlan(store, planOf(1))
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => concord(store, ["report", "progress", `r${i}`, "--progress", String(i), "--job", "j0", "--plan", id]))
    )
    for (const r of results) expect(r.code, r.stderr).toBe(0)
    const reports = JSON.parse((await concord(store, ["history", id, "--json"])).stdout).filter((e: any) => e.doc === "reports:j0")
    expect(reports).toHaveLength(12)
  }, 120_000)
})
