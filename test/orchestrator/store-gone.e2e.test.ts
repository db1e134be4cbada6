/**
 * A store deleted (here: renamed away at once) under a running `concord run`, with real processes: the
 * orchestrator stops with exit 1 and says so, a job's next `concord report` (from the job's own
 * environment) and any other report exit 1 with one clear line naming the store, and nothing brings the
 * store back as a skeleton holding only later writes. What was acknowledged before is in the moved store.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { cleanup, concord, tempDir, writePlan } from "../helpers/cli.js"
import { spawnConcord } from "../helpers/processes.mjs"
import { until } from "../helpers/until.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))

const STACK = /\n\s+at |TypeError|RangeError|ReferenceError|Unhandled|node:internal/
const read = (f: string) => (existsSync(f) ? readFileSync(f, "utf8").trim() : undefined)

describe("a store deleted under a running plan", () => {
  it("is not recreated: the orchestrator exits 1, a job's report after it exits 1 naming the store, earlier reports are in the moved store", async () => {
    const dir = tempDir("concord-gone-")
    dirs.push(dir)
    const store = path.join(dir, "store")
    const moved = `${store}.moved`
    const go = path.join(dir, "go")
    // A reports once (acknowledged), waits for the test to move the store, reports again, records how that went.
    const a =
      `concord report working before; echo $? > ${dir}/A.before; ` +
      `while [ ! -f ${go} ]; do sleep 0.05; done; ` +
      `concord report progress after --progress 50 2> ${dir}/A.err; echo $? > ${dir}/A.code; exec sleep 60`
    const file = writePlan(
      dir,
      "plan.yaml",
      `name: gone\ngraceMs: 300\njobs:\n  - { name: A, run: '${a}' }\n  - { name: B, run: 'echo $$ > ${dir}/B.pid; exec sleep 60' }\n`
    )
    // creating the first plan is what creates a store
    const created = await concord(store, ["plan", "create", file, "--json"], { cwd: dir })
    expect(created.code, created.stderr).toBe(0)
    const id = JSON.parse(created.stdout).id as string
    const run = spawnConcord(store, ["run", id, "--wait"], { cwd: dir, timeoutMs: 120_000 })
    await until("A's first report and B's start", () => read(path.join(dir, "A.before")) === "0" && existsSync(path.join(dir, "B.pid")), 60_000)

    renameSync(store, moved)
    writeFileSync(go, "")
    await until("A's second report to finish", () => read(path.join(dir, "A.code")), 60_000)
    // another writer, from outside the plan's processes
    const late = await concord(store, ["report", "completed", "late", "--plan", id, "--job", "B"], { cwd: dir })
    const r = await run.done

    expect(read(path.join(dir, "A.code"))).toBe("1")
    const err = read(path.join(dir, "A.err"))!
    expect(err).toBe(`concord: store ${store} is gone: its directory does not exist (deleted or moved away?)`)
    expect(late.code).toBe(1)
    expect(late.stderr.trim()).toBe(`concord: store ${store} is gone: its directory does not exist (deleted or moved away?)`)

    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(`plan ${id} is gone from store ${store}`)
    expect(r.stderr).not.toMatch(STACK)
    for (const l of r.stderr.split("\n").filter(Boolean)) expect(l).toMatch(/^concord: /)

    // the store stays gone; what was acknowledged before it went is in the moved directory
    expect(existsSync(store)).toBe(false)
    const kept = new PlanStore(moved, { onWarning: () => {} })
    const log = await kept.loadReports(id, "A")
    expect(log?.reports.map(x => String(x.message))).toEqual(["before"])
  })
})
