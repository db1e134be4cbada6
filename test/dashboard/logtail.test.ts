/**
 * The dashboard's log view (src/dashboard/logtail.ts over src/ops/logs.ts, on a real store): only files
 * under the store's logs/, escapes removed, the tail then every append, a file that does not exist yet
 * waited for, a line still being written shown once and whole.
 */
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { setJobStatus, updateAttempt } from "../../src/doc/plan.js"
import { parsePlanSpec } from "../../src/doc/spec.js"
import { printable, streamJobLog } from "../../src/dashboard/logtail.js"
import { LocalBackend } from "../../src/ops/local.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { cleanup, tempDir } from "../helpers/cli.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))
const ctx = () => ({ by: "test", now: Date.now() })

async function setup() {
  const dir = tempDir("concord-logtail-")
  dirs.push(dir)
  const store = new PlanStore(dir, { onWarning: () => {} })
  const { id } = await store.createPlan(
    parsePlanSpec("name: tail\njobs:\n  - { name: a, run: 'true' }\n  - { name: b, run: 'true' }\n  - { name: c, run: 'true' }\n"),
    dir,
    ctx()
  )
  const log = (job: string) => path.join("logs", id, `${job}.1.log`)
  await store.updatePlan(id, d => setJobStatus(setJobStatus(d, "a", "running", { log: log("a") }, ctx()), "b", "running", { log: log("b") }, ctx()))
  mkdirSync(path.join(dir, "logs", id), { recursive: true })
  return { backend: new LocalBackend(store), id, file: (job: string) => path.join(dir, log(job)) }
}

/** Stream a job's log into a string until the returned stop() is called. */
function watch(backend: LocalBackend, planRef: string, job: string, lines?: number) {
  const ac = new AbortController()
  const got = { start: null as null | { attempt: number; file: string }, text: "" }
  const done = streamJobLog(backend, { planRef, job }, { start: w => (got.start = w), text: t => (got.text += t) }, ac.signal, { lines, pollMs: 50 })
  return { got, done, stop: () => (ac.abort(), done) }
}

describe("dashboard log view", () => {
  it("strips terminal escapes and control characters, keeps newlines and tabs", () => {
    expect(printable("\x1b[31mred\x1b[0m\tok\r\nnext\x07\x1b]0;title\x07\x00")).toBe("red\tok\nnext")
  })

  it("sends the last lines, then every append with escapes removed; a line being written is shown once, whole", async () => {
    const { backend, id, file } = await setup()
    writeFileSync(file("a"), `${"x".repeat(100)}\nline one\nhalf a li`)
    const w = watch(backend, id, "a", 2)
    try {
      await expect.poll(() => w.got.start, { timeout: 5000 }).toMatchObject({ attempt: 1, file: file("a") })
      expect(w.got.text).toBe("line one\n")
      appendFileSync(file("a"), "ne\nline two \x1b[1mbold\x1b[0m\n")
      await expect.poll(() => w.got.text, { timeout: 5000 }).toBe("line one\nhalf a line\nline two bold\n")
    } finally {
      await w.stop()
    }
  })

  it("waits for a log file that does not exist yet", async () => {
    const { backend, id, file } = await setup()
    const w = watch(backend, id, "b")
    try {
      await expect.poll(() => w.got.start, { timeout: 5000 }).not.toBeNull()
      writeFileSync(file("b"), "born\n")
      await expect.poll(() => w.got.text, { timeout: 5000 }).toBe("born\n")
    } finally {
      await w.stop()
    }
  })

  it("refuses, before sending anything, a log path outside the store's logs/ directory, an unknown job, a job with no log", async () => {
    const { backend, id } = await setup()
    writeFileSync(path.join(backend.store.dir, "secret.txt"), "not a log\n")
    for (const log of ["../../../etc/passwd", "/etc/shadow", "secret.txt", "logs/../secret.txt"]) {
      await backend.store.updatePlan(id, d => updateAttempt(d, "b", 1, { log }, ctx()))
      const w = watch(backend, id, "b")
      await expect(w.done).rejects.toMatchObject({ code: "log_outside_store" })
      expect(w.got).toEqual({ start: null, text: "" })
    }
    await expect(watch(backend, id, "zz").done).rejects.toThrow(`plan "tail" has no job "zz"`)
    await expect(watch(backend, id, "c").done).rejects.toThrow(/has no log: it has not started/)
  })
})
