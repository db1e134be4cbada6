// The rule "a store deleted or moved away stays gone": no writer creates a store's root directory except a
// deliberate creation (a new plan, createRoot / PlanStore.create, `create: true`).
import { existsSync, readdirSync } from "node:fs"
import { mkdir, rename } from "node:fs/promises"
import path from "node:path"
import * as A from "@automerge/automerge"
import { describe, expect, it } from "vitest"
import { validatePlanSpec } from "../../../src/doc/spec.js"
import { LocalBackend } from "../../../src/ops/local.js"
import { ensureDirIn, ensureDirInSync, writeFileAtomic } from "../../../src/sync/storage/atomic.js"
import { ConcordStorageAdapter, StoreGoneError } from "../../../src/sync/storage/ConcordStorageAdapter.js"
import { DocStore } from "../../../src/sync/store/DocStore.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { tempDir } from "../helpers.js"

const ctx = () => ({ by: "test", now: Date.now() })
const spec = validatePlanSpec({ name: "gone", jobs: [{ name: "A", run: "true" }] })
const bytes = () => A.save(A.from({ a: 1 }))

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const { dir, cleanup } = await tempDir("concord-gone-")
  try {
    await fn(dir)
  } finally {
    await cleanup()
  }
}

describe("ensureDirIn: directories below a store's root, never the root", () => {
  it("makes every missing level below an existing root", () =>
    withTemp(async dir => {
      await ensureDirIn(dir, path.join(dir, "a", "b", "c"))
      expect(existsSync(path.join(dir, "a", "b", "c"))).toBe(true)
      await ensureDirIn(dir, path.join(dir, "a", "b", "c")) // again: nothing to do
      ensureDirInSync(dir, path.join(dir, "a", "x", "y"))
      expect(existsSync(path.join(dir, "a", "x", "y"))).toBe(true)
    }))

  it("refuses with StoreGoneError, naming the store, when the root is missing, and creates nothing", () =>
    withTemp(async dir => {
      const root = path.join(dir, "store")
      const err = await ensureDirIn(root, path.join(root, "ab", "cd")).catch(e => e)
      expect(err).toBeInstanceOf(StoreGoneError)
      expect(err.message).toBe(`store ${root} is gone: its directory does not exist (deleted or moved away?)`)
      expect(() => ensureDirInSync(root, path.join(root, "logs", "p"))).toThrow(StoreGoneError)
      expect(await writeFileAtomic(path.join(root, "plans", "x.json"), "{}", { root }).catch(e => e)).toBeInstanceOf(StoreGoneError)
      expect(existsSync(root)).toBe(false)
    }))

  it("refuses a directory outside the root", () =>
    withTemp(async dir => {
      await expect(ensureDirIn(path.join(dir, "store"), path.join(dir, "elsewhere"))).rejects.toThrow(/is not inside/)
    }))
})

describe("ConcordStorageAdapter: its root must exist unless opened with create", () => {
  it("a save into a missing root fails with StoreGoneError and leaves no directory behind", () =>
    withTemp(async dir => {
      const root = path.join(dir, "store")
      const a = new ConcordStorageAdapter(root, { onWarning: () => {} })
      const err = await a.save(["abcdef", "incremental", "h1"], bytes()).catch(e => e)
      expect(err).toBeInstanceOf(StoreGoneError)
      expect(err.store).toBe(root)
      expect(existsSync(root)).toBe(false)
      // reads of a missing store are empty, not errors, and create nothing either
      expect(await a.loadRange(["abcdef"])).toEqual([])
      expect(existsSync(root)).toBe(false)
    }))

  it("a store renamed away between two saves is not recreated by the second (the first is in the moved store)", () =>
    withTemp(async dir => {
      const root = path.join(dir, "store")
      await mkdir(root)
      const a = new ConcordStorageAdapter(root, { onWarning: () => {} })
      await a.save(["abcdef", "incremental", "h1"], bytes())
      await rename(root, `${root}.moved`)
      await expect(a.save(["abcdef", "incremental", "h2"], bytes())).rejects.toBeInstanceOf(StoreGoneError)
      await expect(a.save(["zzzzzz", "snapshot", "h3"], bytes())).rejects.toBeInstanceOf(StoreGoneError)
      await expect(a.writeFile(path.join(root, "cache", "x.json"), "{}")).rejects.toBeInstanceOf(StoreGoneError)
      expect(existsSync(root)).toBe(false)
      expect(readdirSync(path.join(`${root}.moved`, "ab", "cdef", "incremental"))).toEqual(["h1"])
    }))

  it("create: true (and createRoot) make the root, parents included", () =>
    withTemp(async dir => {
      const root = path.join(dir, "new", "store")
      await new ConcordStorageAdapter(root, { create: true }).save(["abcdef", "incremental", "h1"], bytes())
      expect(existsSync(path.join(root, "ab", "cdef", "incremental", "h1"))).toBe(true)
      const other = path.join(dir, "other")
      await new ConcordStorageAdapter(other).createRoot()
      expect(existsSync(other)).toBe(true)
    }))
})

describe("PlanStore: only creating a plan (or create()) makes a store", () => {
  it("creating the first plan creates the store; once it is gone, nothing else brings it back", () =>
    withTemp(async dir => {
      const root = path.join(dir, "store")
      const store = new PlanStore(root, { onWarning: () => {} })
      const { id } = await store.createPlan(spec, dir, ctx())
      await store.appendReport(id, "A", { status: "working", message: "one", progress: null, attempt: 1 }, ctx())
      await rename(root, `${root}.gone`)

      // every writer refuses, naming the store; none recreates it
      const report = await store.appendReport(id, "A", { status: "working", message: "two", progress: null, attempt: 1 }, ctx()).catch(e => e)
      expect(report).toBeInstanceOf(StoreGoneError)
      await expect(store.updatePlan(id, d => d)).rejects.toBeInstanceOf(StoreGoneError)
      await expect(store.registerPlan({ id, name: "gone", createdAt: 1, createdBy: "t" })).rejects.toBeInstanceOf(StoreGoneError)
      await expect(store.findPlan(id)).rejects.toBeInstanceOf(StoreGoneError)
      await expect(store.loadPlan(id)).rejects.toThrow(`store ${root} is gone`)
      expect(await store.loadReportDigests(id, ["A"])).toEqual(new Map()) // a read: nothing there
      await store.close()
      expect(existsSync(root)).toBe(false)

      // the job's report through the local backend says it was not stored
      const backend = new LocalBackend(new PlanStore(root, { onWarning: () => {} }))
      await expect(backend.appendReport(id, "A", { status: "working", message: "three", progress: null, attempt: 1 }, ctx())).rejects.toThrow(
        /is gone: .*; the report was not stored$/
      )
      expect(existsSync(root)).toBe(false)

      // a deliberate creation still works
      await store.create()
      expect(existsSync(root)).toBe(true)
    }))

  it.each([
    ["the endpoint of concord run", false],
    ["concord mcp, writing with blocking calls", true],
  ])("a live store (%s) with every document in memory does not recreate it either", (_, blockingWrites) =>
    withTemp(async dir => {
      const root = path.join(dir, "store")
      const first = new PlanStore(root, { onWarning: () => {} })
      const { id } = await first.createPlan(spec, dir, ctx())
      const live = new PlanStore(root, { live: true, blockingWrites, onWarning: () => {} })
      await live.appendReport(id, "A", { status: "working", message: "one", progress: null, attempt: 1 }, ctx())
      await live.appendReport(id, "A", { status: "working", message: "one again", progress: null, attempt: 1 }, ctx())
      expect(await live.findPlan(id)).toBeDefined()
      await rename(root, `${root}.gone`)
      await expect(live.appendReport(id, "A", { status: "progress", message: "two", progress: 50, attempt: 1 }, ctx())).rejects.toBeInstanceOf(StoreGoneError)
      await expect(live.updatePlan(id, d => d)).rejects.toBeInstanceOf(StoreGoneError)
      await live.close() // owed digest writes are dropped, not written into a new skeleton
      expect(existsSync(root)).toBe(false)
    })
  )

  it("a DocStore watcher of a deleted store does not recreate it", () =>
    withTemp(async dir => {
      const root = path.join(dir, "store")
      await mkdir(root)
      const docs = new DocStore(root, { onWarning: () => {} })
      await docs.save("abcdefgh", A.from({ a: 1 }))
      const w = docs.watch(["abcdefgh", "zzzzzzzz"], () => {}, { pollMs: 20 })
      try {
        await new Promise(r => setTimeout(r, 100))
        await rename(root, `${root}.gone`)
        await new Promise(r => setTimeout(r, 300))
        expect(existsSync(root)).toBe(false)
      } finally {
        w.close()
      }
    }))
})
