/** src/ops/logs.ts over a real store: tails of every shape, and following a log as it grows. */
import { appendFileSync, mkdirSync, truncateSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { setJobStatus, updateAttempt } from "../../src/doc/plan.js"
import { parsePlanSpec } from "../../src/doc/spec.js"
import { LocalBackend } from "../../src/ops/local.js"
import { followLog, followStart, tailLog } from "../../src/ops/logs.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { cleanup, tempDir } from "../helpers/cli.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))
const ctx = () => ({ by: "test", now: Date.now() })

async function setup() {
  const dir = tempDir("concord-logs-")
  dirs.push(dir)
  const store = new PlanStore(dir, { onWarning: () => {} })
  const { id } = await store.createPlan(parsePlanSpec("name: logs\njobs:\n  - { name: a, run: 'true' }\n  - { name: b, run: 'true' }\n"), dir, ctx())
  const log = path.join("logs", id, "a.1.log")
  await store.updatePlan(id, d => setJobStatus(d, "a", "running", { log }, ctx()))
  mkdirSync(path.dirname(path.join(dir, log)), { recursive: true })
  return { backend: new LocalBackend(store), id, file: path.join(dir, log) }
}

describe("job logs", () => {
  it("tails: the last N lines, a partial last line, an empty file, a file shorter than N, lines longer than a read block", async () => {
    const { backend, id, file } = await setup()
    writeFileSync(file, "")
    expect(await tailLog(backend, { planRef: id, job: "a", lines: 5 })).toMatchObject({ lines: [], truncated: false, size: 0 })
    writeFileSync(file, `${Array.from({ length: 1000 }, (_, i) => `line ${i}`).join("\n")}\n`)
    const t = await tailLog(backend, { planRef: id, job: "a", lines: 3 })
    expect(t).toMatchObject({ job: "a", attempt: 1, lines: ["line 997", "line 998", "line 999"], truncated: true, file })
    appendFileSync(file, "half a li")
    const half = await tailLog(backend, { planRef: id, job: "a", lines: 2 })
    expect(half).toMatchObject({ lines: ["line 999", "half a li"], partial: true })
    // a follower shows the complete lines and continues the partial one from its start
    expect(followStart(half)).toEqual({ lines: ["line 999"], from: half.size - "half a li".length })
    expect(followStart(t)).toEqual({ lines: t.lines, from: t.size })
    writeFileSync(file, "one\ntwo\n")
    expect(await tailLog(backend, { planRef: id, job: "a", lines: 10 })).toMatchObject({ lines: ["one", "two"], truncated: false })
    const long = "x".repeat(200_000)
    writeFileSync(file, `first\n${long}\nlast\n`)
    expect((await tailLog(backend, { planRef: id, job: "a", lines: 2 })).lines).toEqual([long, "last"])
    expect((await tailLog(backend, { planRef: id, job: "a" })).lines).toEqual(["first", long, "last"])
  })

  it("refuses clearly: no such job, a job that never started, a bad line count, a missing file", async () => {
    const { backend, id, file } = await setup()
    await expect(tailLog(backend, { planRef: id, job: "zz" })).rejects.toThrow(`plan "logs" has no job "zz" (jobs: a, b)`)
    await expect(tailLog(backend, { planRef: id, job: "b" })).rejects.toThrow(`job "b" attempt 1 has no log: it has not started (status queued)`)
    await expect(tailLog(backend, { planRef: id, job: "a", lines: 1.5 })).rejects.toThrow(/invalid lines 1.5/)
    await expect(tailLog(backend, { planRef: id, job: "a", attempt: 2 })).rejects.toThrow(`job "a" has no attempt 2 (current is 1)`)
    await expect(tailLog(backend, { planRef: id, job: "a" })).rejects.toThrow(`the log of job "a" attempt 1 (${file}) does not exist on this machine`)
  })

  it("never reads a file outside the store's logs/ directory, whatever log path a plan records", async () => {
    const { backend, id } = await setup()
    const dir = backend.store.dir
    writeFileSync(path.join(dir, "secret.txt"), "not a log\n")
    for (const log of ["../../../etc/passwd", "/etc/passwd", "secret.txt", "logs/../secret.txt"]) {
      await backend.store.updatePlan(id, d => updateAttempt(d, "b", 1, { log }, ctx()))
      await expect(tailLog(backend, { planRef: id, job: "b" })).rejects.toThrow(/outside the store's logs\/ directory/)
    }
  })

  it("follows: complete lines as they are appended (a partial line waits for its line break), and starts over after a truncation", async () => {
    const { backend, id, file } = await setup()
    writeFileSync(file, "before\n")
    const got: string[] = []
    const ac = new AbortController()
    const done = followLog(backend, { planRef: id, job: "a" }, lines => got.push(...lines), ac.signal, { pollMs: 20, from: "before\n".length })
    const until = async (n: number) => {
      const end = Date.now() + 20_000
      while (got.length < n) {
        if (Date.now() > end) throw new Error(`have ${JSON.stringify(got)}`)
        await new Promise(r => setTimeout(r, 10))
      }
    }
    await new Promise(r => setTimeout(r, 100))
    appendFileSync(file, "one\ntw")
    await until(1)
    await new Promise(r => setTimeout(r, 100))
    expect(got).toEqual(["one"])
    appendFileSync(file, "o\nthree\n")
    await until(3)
    truncateSync(file, 0)
    await new Promise(r => setTimeout(r, 100))
    appendFileSync(file, "again\n")
    await until(4)
    ac.abort()
    await done
    expect(got).toEqual(["one", "two", "three", "again"])
  })
})
