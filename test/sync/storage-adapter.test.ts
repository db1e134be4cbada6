import { describe, expect, it, vi } from "vitest"
import { promises as fsPromises } from "node:fs"
import { runStorageAdapterTests } from "@automerge/automerge-repo/helpers/tests/storage-adapter-tests.js"
import { mkdir, readdir, readFile, writeFile, utimes, stat } from "node:fs/promises"
import path from "node:path"
import * as A from "@automerge/automerge"
import { ConcordStorageAdapter, StoreError } from "../../src/sync/storage/ConcordStorageAdapter.js"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { tempDir } from "./helpers.js"

runStorageAdapterTests(async () => {
  const { dir, cleanup } = await tempDir()
  return { adapter: new ConcordStorageAdapter(dir, { onWarning: () => {} }), teardown: cleanup }
}, "ConcordStorageAdapter")

describe("ConcordStorageAdapter", () => {
  it("uses the NodeFSStorageAdapter layout, so both can share a directory", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const ours = new ConcordStorageAdapter(dir)
      const theirs = new NodeFSStorageAdapter(dir)
      const bytes = A.save(A.from({ a: 1 }))
      await ours.save(["abcdef", "snapshot", "h1"], bytes)
      expect(await readFile(path.join(dir, "ab", "cdef", "snapshot", "h1"))).toEqual(Buffer.from(bytes))
      expect(await new NodeFSStorageAdapter(dir).load(["abcdef", "snapshot", "h1"])).toEqual(bytes)
      await theirs.save(["abcdef", "incremental", "h2"], bytes)
      const range = await ours.loadRange(["abcdef"])
      expect(range.map(c => c.key.join("/")).sort()).toEqual(["abcdef/incremental/h2", "abcdef/snapshot/h1"])
      // temp and quarantine directories are not part of any key range
      expect((await ours.loadRange([])).map(c => c.key.join("/")).sort()).toEqual([
        "abcdef/incremental/h2",
        "abcdef/snapshot/h1",
      ])
      expect(await readdir(path.join(dir, ".tmp"))).toEqual([])
    } finally {
      await cleanup()
    }
  })

  it("quarantines damaged snapshot/incremental chunks and warns; other keys are returned as-is", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const warnings: string[] = []
      const ad = new ConcordStorageAdapter(dir, { onWarning: m => warnings.push(m), quarantineGraceMs: 0 })
      const good = A.save(A.from({ a: 1 }))
      await ad.save(["docid1", "snapshot", "good"], good)
      // written by someone else (a chunk this instance wrote itself is returned as written)
      await new ConcordStorageAdapter(dir).save(["docid1", "incremental", "torn"], good.slice(0, good.length - 3))
      await ad.save(["docid1", "sync-state", "peer"], new Uint8Array([1, 2, 3]))
      const chunks = await ad.loadRange(["docid1"])
      expect(chunks.map(c => c.key[2]).sort()).toEqual(["good", "peer"])
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain(path.join(dir, "do", "cid1", "incremental", "torn"))
      expect(warnings[0]).toMatch(/truncated/)
      const q = await readdir(path.join(dir, "quarantine"))
      expect(q).toHaveLength(1)
      expect(q[0]).toMatch(/^docid1__incremental__torn\.\d+$/)
      expect(await ad.load(["docid1", "incremental", "torn"])).toBeUndefined()
    } finally {
      await cleanup()
    }
  })

  it("with quarantineGraceMs, leaves a recently written damaged chunk in place but skips it", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const warnings: string[] = []
      const ad = new ConcordStorageAdapter(dir, { onWarning: m => warnings.push(m), quarantineGraceMs: 2000 })
      const file = path.join(dir, "do", "cid1", "incremental", "empty")
      await mkdir(path.dirname(file), { recursive: true })
      await writeFile(file, new Uint8Array())
      expect(await ad.loadRange(["docid1"])).toEqual([])
      expect(await ad.loadRange(["docid1"])).toEqual([])
      expect(warnings).toHaveLength(1) // warned once
      expect((await stat(file)).size).toBe(0)
      const old = new Date(Date.now() - 10_000)
      await utimes(file, old, old)
      expect(await ad.loadRange(["docid1"])).toEqual([])
      expect(warnings).toHaveLength(2)
      expect(warnings[1]).toMatch(/empty file/)
      expect(await readdir(path.join(dir, "quarantine"))).toHaveLength(1)
    } finally {
      await cleanup()
    }
  })

  it("loadRange re-lists when a listed file vanishes before it is read (concurrent compaction)", async () => {
    const { dir, cleanup } = await tempDir()
    const realOpen = fsPromises.open
    try {
      const writer = new ConcordStorageAdapter(dir)
      const payload = A.save(A.from({ a: 1 }))
      await writer.save(["docid1", "snapshot", "s0"], payload)
      await writer.save(["docid1", "incremental", "i0"], payload)
      // another process compacts between our readdir and our open: writes s1, then deletes s0 and i0
      let raced = false
      const spy = vi.spyOn(fsPromises, "open").mockImplementation((async (...args: Parameters<typeof realOpen>) => {
        if (!raced && String(args[0]).endsWith(path.join("snapshot", "s0"))) {
          raced = true
          spy.mockRestore()
          await writer.save(["docid1", "snapshot", "s1"], payload)
          await writer.remove(["docid1", "snapshot", "s0"])
          await writer.remove(["docid1", "incremental", "i0"])
        }
        return realOpen(...args)
      }) as typeof realOpen)
      const got = await new ConcordStorageAdapter(dir).loadRange(["docid1"])
      expect(raced).toBe(true)
      expect(got.map(c => c.key.join("/"))).toEqual(["docid1/snapshot/s1"])
    } finally {
      fsPromises.open = realOpen
      await cleanup()
    }
  })

  it("a failed write (ENOSPC) leaves neither a temp file nor a partial chunk, and throws StoreError", async () => {
    const { dir, cleanup } = await tempDir()
    const realOpen = fsPromises.open
    try {
      const ad = new ConcordStorageAdapter(dir)
      await ad.save(["docid1", "sync-state", "warmup"], new Uint8Array([1])) // creates .tmp
      vi.spyOn(fsPromises, "open").mockImplementation((async (...args: Parameters<typeof realOpen>) => {
        const fh = await realOpen(...args)
        if (String(args[0]).includes(`${path.sep}.tmp${path.sep}`)) {
          fh.writeFile = async (data: unknown) => {
            await fh.write(Buffer.from((data as Uint8Array).subarray(0, 3))) // a partial write, then the disk is full
            throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", errno: -28 })
          }
        }
        return fh
      }) as typeof realOpen)
      const err = await ad.save(["docid1", "incremental", "x"], A.save(A.from({ a: 1 }))).catch(e => e)
      vi.restoreAllMocks()
      expect(err).toBeInstanceOf(StoreError)
      expect(err.code).toBe("ENOSPC")
      expect(err.message).toBe(`cannot write ${path.join(dir, "do", "cid1", "incremental", "x")}: no space left on device (ENOSPC)`)
      expect(await readdir(path.join(dir, ".tmp"))).toEqual([])
      expect(await ad.load(["docid1", "incremental", "x"])).toBeUndefined()
    } finally {
      fsPromises.open = realOpen
      await cleanup()
    }
  })

  it("turns disk errors into StoreError", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const notADir = path.join(dir, "file")
      await writeFile(notADir, "x")
      const ad = new ConcordStorageAdapter(path.join(notADir, "store"))
      const err = await ad.save(["docid1", "incremental", "x"], new Uint8Array([1])).catch(e => e)
      expect(err).toBeInstanceOf(StoreError)
      expect(err.code).toBe("ENOTDIR")
      expect(err.message).toMatch(/^cannot write .*\/do\/cid1\/incremental\/x: not a directory .*\(ENOTDIR\)/)
      // reads of a store below a regular file just find nothing
      expect(await ad.load(["docid1", "incremental", "x"])).toBeUndefined()
      expect(await ad.loadRange(["docid1"])).toEqual([])
      await ad.remove(["docid1", "incremental", "x"])
    } finally {
      await cleanup()
    }
  })
})
