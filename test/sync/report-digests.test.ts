/** Status reads report digests from a cache keyed by the log's chunk files; it must never be stale. */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { reportDocId } from "../../src/doc/ids.js"
import { digestReports } from "../../src/doc/reports.js"
import { parsePlanSpec } from "../../src/doc/spec.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"

let dir: string
afterEach(() => rmSync(dir, { recursive: true, force: true }))
const ctx = () => ({ by: "t", now: Date.now() })
function listing(docId: string): string[] {
  const base = path.join(dir, docId.slice(0, 2), docId.slice(2))
  return ["incremental", "snapshot"]
    .flatMap(t => (existsSync(path.join(base, t)) ? readdirSync(path.join(base, t)).map(f => `${t}/${f}`) : []))
    .sort()
}

describe("report digests", () => {
  it("match the logs after every write, from any instance, and survive a damaged cache", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "digests-"))
    const a = new PlanStore(dir, { onWarning: () => {} })
    const { id } = await a.createPlan(parsePlanSpec("name: d\njobs:\n  - { name: x, run: 'true' }\n  - { name: y, run: 'true' }\n"), ".", ctx())
    expect((await a.loadReportDigests(id, ["x", "y"])).size).toBe(0)
    for (let i = 0; i < 30; i++) {
      // Alternate writers: another instance's writes must invalidate the cached digest.
      const writer = i % 2 ? a : new PlanStore(dir, { onWarning: () => {} })
      await writer.appendReport(id, "x", { status: "progress", message: `m${i}`, progress: i, attempt: 1 + (i >= 20 ? 1 : 0) }, ctx())
      // The writer left a digest that matches the files on disk: the next status needs no log.
      const cache = JSON.parse(readFileSync(path.join(dir, "cache", "digests", `${reportDocId(id, "x")}.json`), "utf8"))
      expect(cache.chunks).toEqual(listing(reportDocId(id, "x")))
      expect(cache.digest.last.message).toBe(`m${i}`)
      const got = (await new PlanStore(dir, { onWarning: () => {} }).loadReportDigests(id, ["x", "y"])).get("x")
      expect(got).toEqual(digestReports(await a.loadReports(id, "x")))
      expect(got?.last?.message).toBe(`m${i}`)
    }
    const d = (await a.loadReportDigests(id, ["x"])).get("x")!
    expect([d.byAttempt["1"].last?.message, d.byAttempt["1"].progress, d.byAttempt["2"].progress]).toEqual(["m19", 19, 29])
    const cacheDir = path.join(dir, "cache", "digests")
    for (const f of readdirSync(cacheDir)) writeFileSync(path.join(cacheDir, f), "{ not json")
    expect((await a.loadReportDigests(id, ["x"])).get("x")).toEqual(d)
  })
})
