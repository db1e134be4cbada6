import { describe, expect, it, vi } from "vitest"
import { promises as fsPromises } from "node:fs"
import { runStorageAdapterTests } from "@automerge/automerge-repo/helpers/tests/storage-adapter-tests.js"
import { mkdir, readdir, readFile, writeFile, utimes, stat } from "node:fs/promises"
import { createHash } from "node:crypto"
import path from "node:path"
import * as A from "@automerge/automerge"
import { ConcordStorageAdapter, StoreError } from "../../../src/sync/storage/ConcordStorageAdapter.js"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { groupWritesAdapter, tempDir } from "../helpers.js"

runStorageAdapterTests(async () => {
  const { dir, cleanup } = await tempDir()
  return { adapter: new ConcordStorageAdapter(dir, { onWarning: () => {} }), teardown: cleanup }
}, "ConcordStorageAdapter")

/**
 * Record the calls a test makes through node:fs/promises (each one a round trip through Node's thread
 * pool), still made for real; vi.restoreAllMocks() ends it.
 */
function spyPool(names: readonly ("open" | "mkdir" | "rename" | "stat" | "readdir" | "readFile")[], record: (name: string, args: unknown[]) => void): void {
  for (const k of names) {
    const real = fsPromises[k] as (...a: unknown[]) => Promise<unknown>
    vi.spyOn(fsPromises, k).mockImplementation((async (...args: unknown[]) => {
      record(k, args)
      return real(...args)
    }) as never)
  }
}

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
      expect((await ours.loadRange([])).map(c => c.key.join("/")).sort()).toEqual(["abcdef/incremental/h2", "abcdef/snapshot/h1"])
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
      await new ConcordStorageAdapter(dir).save(["docid1", "snapshot", "good"], A.save(A.from({ a: 1 })))
      const file = path.join(dir, "do", "cid1", "incremental", "empty")
      await mkdir(path.dirname(file), { recursive: true })
      await writeFile(file, new Uint8Array())
      expect((await ad.loadRange(["docid1"])).map(c => c.key[2])).toEqual(["good"])
      expect((await ad.loadRange(["docid1"])).map(c => c.key[2])).toEqual(["good"])
      expect(warnings).toHaveLength(1) // warned once
      expect(warnings[0]).toMatch(/may still be being written/)
      expect((await stat(file)).size).toBe(0)
      const old = new Date(Date.now() - 10_000)
      await utimes(file, old, old)
      expect((await ad.loadRange(["docid1"])).map(c => c.key[2])).toEqual(["good"])
      expect(warnings).toHaveLength(2)
      expect(warnings[1]).toMatch(/empty file/)
      expect(warnings[1]).toMatch(/moved it to/)
      expect(await readdir(path.join(dir, "quarantine"))).toHaveLength(1)
    } finally {
      await cleanup()
    }
  })

  it("by default (no option, no env) waits 60 s before quarantining", async () => {
    const { dir, cleanup } = await tempDir()
    const saved = process.env.CONCORD_QUARANTINE_GRACE_MS
    delete process.env.CONCORD_QUARANTINE_GRACE_MS
    try {
      const ad = new ConcordStorageAdapter(dir, { onWarning: () => {} })
      expect(ad.quarantineGraceMs).toBe(60_000)
      process.env.CONCORD_QUARANTINE_GRACE_MS = "1500"
      expect(new ConcordStorageAdapter(dir).quarantineGraceMs).toBe(1500)
      process.env.CONCORD_QUARANTINE_GRACE_MS = "nonsense"
      expect(new ConcordStorageAdapter(dir).quarantineGraceMs).toBe(60_000)
    } finally {
      if (saved === undefined) delete process.env.CONCORD_QUARANTINE_GRACE_MS
      else process.env.CONCORD_QUARANTINE_GRACE_MS = saved
      await cleanup()
    }
  })

  it("a file written while a reader looks (create, then write) is returned once complete, never moved", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const warnings: string[] = []
      const ad = new ConcordStorageAdapter(dir, { onWarning: m => warnings.push(m) })
      const bytes = A.save(A.from({ a: 1 }))
      const file = path.join(dir, "do", "cid1", "snapshot", "s1")
      await mkdir(path.dirname(file), { recursive: true })
      await writeFile(file, new Uint8Array()) // NodeFSStorageAdapter: open (create, truncate) ...
      setTimeout(() => void writeFile(file, bytes), 50) // ... and write, a moment later
      // a short-lived reader waits for a recent damaged file a little before skipping it
      const got = await ad.loadRange(["docid1"])
      expect(got.map(c => c.key[2])).toEqual(["s1"])
      expect(warnings).toEqual([])
      expect(await readdir(dir)).not.toContain("quarantine")
    } finally {
      await cleanup()
    }
  })

  it("never moves a document's only data away, even when old and damaged", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const warnings: string[] = []
      const ad = new ConcordStorageAdapter(dir, { onWarning: m => warnings.push(m), quarantineGraceMs: 0 })
      const file = path.join(dir, "do", "cid1", "snapshot", "s1")
      await mkdir(path.dirname(file), { recursive: true })
      await writeFile(file, A.save(A.from({ a: 1 })).slice(0, 20))
      expect(await ad.loadRange(["docid1"])).toEqual([])
      expect(await ad.load(["docid1", "snapshot", "s1"])).toBeUndefined()
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toMatch(/left it in place: it is the only data of document docid1/)
      expect((await stat(file)).size).toBe(20)
      expect(await readdir(dir)).not.toContain("quarantine")
    } finally {
      await cleanup()
    }
  })

  it("puts a quarantined chunk back once it validates (a writer finished writing into the moved file)", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const warnings: string[] = []
      const ad = new ConcordStorageAdapter(dir, { onWarning: m => warnings.push(m), quarantineGraceMs: 0 })
      const good = A.save(A.from({ a: 1 }))
      await ad.save(["docid1", "snapshot", "s0"], good)
      const later = A.save(A.from({ b: 2 }))
      const file = path.join(dir, "do", "cid1", "snapshot", "s1")
      await writeFile(file, new Uint8Array())
      // the stock writer opened the file before it was moved: keep its descriptor
      const fh = await fsPromises.open(file, "r+")
      expect((await ad.loadRange(["docid1"])).map(c => c.key[2])).toEqual(["s0"])
      const q = await readdir(path.join(dir, "quarantine"))
      expect(q).toHaveLength(1)
      await fh.write(later, 0, later.length, 0) // its bytes land in the quarantined file
      await fh.close()
      // the next listing of the document restores it
      expect((await ad.loadRange(["docid1"])).map(c => c.key[2]).sort()).toEqual(["s0", "s1"])
      expect(await readdir(path.join(dir, "quarantine"))).toEqual([])
      expect(await readFile(file)).toEqual(Buffer.from(later))
      expect(warnings.some(w => /is valid now; restored it/.test(w))).toBe(true)
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

  it.each([
    ["", false, false],
    [" (blocking writes, as concord mcp makes them)", true, false],
    [" (group writes, as concord run's endpoint makes them)", false, true],
  ])("a temp or document directory removed since the last write is made again by the next write%s", async (_, blockingWrites, groupWrites) => {
    const { dir, cleanup } = await tempDir()
    try {
      const a = new ConcordStorageAdapter(dir, { blockingWrites, groupWrites })
      const bytes = A.save(A.from({ a: 1 }))
      await a.save(["abcdef", "incremental", "h1"], bytes)
      await a.save(["abcdef", "incremental", "h1b"], bytes) // (a directory it knows: written with blocking calls if asked)
      expect(await a.load(["abcdef", "incremental", "h1b"])).toEqual(bytes)
      expect(await fsPromises.readdir(a.tmpDirectory)).toEqual([])
      // another process removes the document (removeRange) and someone cleans the temp directory
      await fsPromises.rm(path.join(dir, "ab"), { recursive: true })
      await fsPromises.rm(a.tmpDirectory, { recursive: true })
      await a.save(["abcdef", "incremental", "h2"], bytes)
      expect(await a.load(["abcdef", "incremental", "h2"])).toEqual(bytes)
      expect(await a.load(["abcdef", "incremental", "h1"])).toBeUndefined()
      // the store itself removed: the write fails, and nothing is made again
      await fsPromises.rm(dir, { recursive: true })
      await expect(a.save(["abcdef", "incremental", "h3"], bytes)).rejects.toThrow(/gone/)
      await expect(stat(dir)).rejects.toThrow(/ENOENT/)
    } finally {
      await cleanup()
    }
  })

  it('blockingWrites "alone": a lone save makes no thread-pool calls; saves made at once go through the pool and overlap; all land', async () => {
    const { dir, cleanup } = await tempDir()
    const opened: string[] = []
    const realOpen = fsPromises.open
    try {
      const a = new ConcordStorageAdapter(dir, { blockingWrites: "alone" })
      const data = Array.from({ length: 20 }, (_, n) => A.save(A.from({ n })))
      const bytes = (n: number) => data[n]
      await a.save(["abcdef", "incremental", "h0"], bytes(0)) // (a directory it does not know yet: the usual path)
      vi.spyOn(fsPromises, "open").mockImplementation((async (...args: Parameters<typeof realOpen>) => {
        opened.push(String(args[0]))
        return realOpen(...args)
      }) as typeof realOpen)
      await a.save(["abcdef", "incremental", "h1"], bytes(1))
      expect(opened).toEqual([]) // alone: blocking calls only
      await Promise.all(Array.from({ length: 8 }, (_, i) => a.save(["abcdef", "incremental", `c${i}`], bytes(10 + i))))
      // the first of them found none under way (blocking); the seven others went through the pool
      expect(opened.filter(f => f.includes(`${path.sep}.tmp${path.sep}`))).toHaveLength(7)
      for (let i = 0; i < 8; i++) expect(await a.load(["abcdef", "incremental", `c${i}`])).toEqual(bytes(10 + i))
      expect(await a.load(["abcdef", "incremental", "h1"])).toEqual(bytes(1))
      expect(await readdir(a.tmpDirectory)).toEqual([])
    } finally {
      vi.restoreAllMocks()
      await cleanup()
    }
  })

  it("blockingWrites (as a one-shot concord report makes them): a first write into a directory that exists makes no thread-pool calls; a missing one is made the usual way", async () => {
    const { dir, cleanup } = await tempDir()
    const pooled: string[] = []
    try {
      // the store as another process left it: the temp directory, a document's directory and the digest
      // cache's, none of which this process has written into
      for (const d of [".tmp", "ab/cdef/incremental", "cache/digests"]) await mkdir(path.join(dir, d), { recursive: true })
      const a = new ConcordStorageAdapter(dir, { blockingWrites: true })
      const bytes = A.save(A.from({ a: 1 }))
      spyPool(["open", "mkdir", "rename", "stat"], (k, args) => pooled.push(`${k} ${path.relative(dir, String(args[0]))}`))
      await a.save(["abcdef", "incremental", "h1"], bytes)
      await a.writeFile(path.join(dir, "cache", "digests", "abcdef.json"), "{}", { durable: false })
      expect(pooled).toEqual([])
      // a document with no directory yet: made (with its parents' fsyncs) through the pool
      await a.save(["ghijkl", "incremental", "h1"], bytes)
      expect(pooled).toContain(`mkdir ${path.join("gh", "ijkl", "incremental")}`)
      vi.restoreAllMocks()
      expect(await a.load(["abcdef", "incremental", "h1"])).toEqual(bytes)
      expect(await a.load(["ghijkl", "incremental", "h1"])).toEqual(bytes)
      expect(await readFile(path.join(dir, "cache", "digests", "abcdef.json"), "utf8")).toBe("{}")
      expect(await readdir(a.tmpDirectory)).toEqual([])
    } finally {
      vi.restoreAllMocks()
      await cleanup()
    }
  })

  it("blockingReads (as a one-shot concord report reads): the same chunks as a thread-pool reader, damaged ones skipped alike, with no thread-pool call", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const writer = new ConcordStorageAdapter(dir)
      const chunks = Array.from({ length: 5 }, (_, n) => A.save(A.from({ n })))
      for (const [n, bytes] of chunks.entries()) await writer.save(["abcdef", n === 0 ? "snapshot" : "incremental", `h${n}`], bytes)
      await writeFile(path.join(dir, "ab", "cdef", "incremental", "torn"), chunks[1].subarray(0, 9)) // damaged
      await mkdir(path.join(dir, "cache"), { recursive: true })
      await writeFile(path.join(dir, "cache", "x.json"), '{"a":1}')
      const opts = { quarantineGraceMs: 0, autoRestore: false, onWarning: () => {} }
      const pooled = await new ConcordStorageAdapter(dir, opts).loadRange(["abcdef"])
      const calls: string[] = []
      spyPool(["open", "readdir", "readFile", "stat"], k => calls.push(k))
      const b = new ConcordStorageAdapter(dir, { ...opts, blockingReads: true })
      const blocking = await b.loadRange(["abcdef"])
      expect(await b.load(["abcdef", "incremental", "h2"])).toEqual(chunks[2])
      expect(await b.load(["abcdef", "incremental", "nothing"])).toBeUndefined()
      expect(await b.loadRange(["ghijkl"])).toEqual([])
      expect(await b.readText(path.join(dir, "cache", "x.json"))).toBe('{"a":1}')
      await expect(b.readText(path.join(dir, "cache", "none.json"))).rejects.toThrow(/ENOENT/)
      expect(calls).toEqual([])
      vi.restoreAllMocks()
      expect(blocking.map(c => c.key.join("/")).sort()).toEqual(pooled.map(c => c.key.join("/")).sort())
      expect(blocking.map(c => c.key.join("/")).sort()).toEqual([
        "abcdef/incremental/h1",
        "abcdef/incremental/h2",
        "abcdef/incremental/h3",
        "abcdef/incremental/h4",
        "abcdef/snapshot/h0",
      ])
      for (const c of blocking) expect(c.data).toEqual(chunks[Number(c.key[2].slice(1))])
    } finally {
      vi.restoreAllMocks()
      await cleanup()
    }
  })

  /** A groupWrites adapter whose two documents' directories exist, and distinct chunks to write with it. */
  async function groupAdapter(dir: string) {
    const a = await groupWritesAdapter(dir, ["abcdef", "ghijkl"])
    const data = Array.from({ length: 40 }, (_, n) => A.save(A.from({ n })))
    return { a, bytes: (n: number) => data[n] }
  }

  it("groupWrites: saves asked for at once are one group (one fsync per file, one per directory); later ones never join a group under way", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const { a, bytes } = await groupAdapter(dir)
      const base = { ...a.groupStats }
      const delta = () => Object.fromEntries(Object.entries(a.groupStats).map(([k, v]) => [k, v - base[k as keyof typeof base]]))
      // eight saves into two documents' directories, asked for at once
      const keys = Array.from({ length: 8 }, (_, i) => [i % 2 ? "abcdef" : "ghijkl", "incremental", `k${i}`])
      await Promise.all(keys.map((k, i) => a.save(k, bytes(i + 1))))
      expect(delta()).toEqual({ groups: 1, files: 8, fileSyncs: 8, dirSyncs: 2 })
      for (const [i, k] of keys.entries()) expect(await a.load(k)).toEqual(bytes(i + 1))
      // a lone save is a group of one, started at once
      Object.assign(base, a.groupStats)
      await a.save(["abcdef", "incremental", "lone"], bytes(20))
      expect(delta()).toEqual({ groups: 1, files: 1, fileSyncs: 1, dirSyncs: 1 })
      // four saves, then four more once their group has started: two groups, not one (a group's files are
      // fixed when it starts) nor five (the later four, asked for at once, go together)
      Object.assign(base, a.groupStats)
      const first = Promise.all([0, 1, 2, 3].map(i => a.save(["abcdef", "incremental", `w${i}`], bytes(30 + i))))
      await new Promise(r => setImmediate(() => setImmediate(r))) // the first group has started
      const second = Promise.all([4, 5, 6, 7].map(i => a.save(["ghijkl", "incremental", `w${i}`], bytes(30 + i))))
      await Promise.all([first, second])
      expect(delta()).toEqual({ groups: 2, files: 8, fileSyncs: 8, dirSyncs: 2 })
      for (let i = 0; i < 8; i++) expect(await a.load([i < 4 ? "abcdef" : "ghijkl", "incremental", `w${i}`])).toEqual(bytes(30 + i))
      expect(await readdir(a.tmpDirectory)).toEqual([])
    } finally {
      await cleanup()
    }
  })

  it("groupWrites: a file of a group that cannot be written fails alone, with StoreError, leaving no temp file or partial chunk", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const { a, bytes } = await groupAdapter(dir)
      // another process turned one document's directory into a file: writes into it cannot succeed
      const broken = path.join(dir, "gh", "ijkl", "incremental")
      await fsPromises.rm(broken, { recursive: true })
      await writeFile(broken, "not a directory")
      const outcomes = await Promise.allSettled([
        a.save(["abcdef", "incremental", "ok1"], bytes(1)),
        a.save(["ghijkl", "incremental", "bad"], bytes(2)),
        a.save(["abcdef", "incremental", "ok2"], bytes(3)),
      ])
      expect(outcomes.map(o => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"])
      const err = (outcomes[1] as PromiseRejectedResult).reason
      expect(err).toBeInstanceOf(StoreError)
      expect(err.message).toContain(path.join(dir, "gh", "ijkl", "incremental", "bad"))
      expect(await a.load(["abcdef", "incremental", "ok1"])).toEqual(bytes(1))
      expect(await a.load(["abcdef", "incremental", "ok2"])).toEqual(bytes(3))
      expect(await readFile(broken, "utf8")).toBe("not a directory")
      expect(await readdir(a.tmpDirectory)).toEqual([])
    } finally {
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

  it("skipIdentical: an incremental on disk byte for byte under its content name is not written again; any other is", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const a = new ConcordStorageAdapter(dir, { onWarning: () => {}, skipIdentical: true })
      const plain = new ConcordStorageAdapter(dir, { onWarning: () => {} })
      const bytes = A.save(A.from({ a: 1 }))
      const hash = createHash("sha256").update(bytes).digest("hex")
      const key = ["abcdef", "incremental", hash]
      const file = a.filePath(key)
      // written by another writer (as the store's other processes do): the same bytes are not written again
      await plain.save(key, bytes)
      const ino = (await stat(file)).ino
      await a.save(key, bytes)
      expect(a.skipStats.skipped).toBe(1)
      expect((await stat(file)).ino).toBe(ino)
      expect(await a.load(key)).toEqual(bytes)
      // a torn file under that name is written (whole) again
      await writeFile(file, bytes.subarray(0, 10))
      await a.save(key, bytes)
      expect(a.skipStats.skipped).toBe(1)
      expect(new Uint8Array(await readFile(file))).toEqual(bytes)
      // only content-named incrementals: a snapshot, or a name that is not the bytes' hash, is written
      const snap = ["abcdef", "snapshot", "h1"]
      await plain.save(snap, bytes)
      const snapIno = (await stat(a.filePath(snap))).ino
      await a.save(snap, bytes)
      expect((await stat(a.filePath(snap))).ino).not.toBe(snapIno)
      const other = ["abcdef", "incremental", "f".repeat(64)]
      await plain.save(other, bytes)
      const otherIno = (await stat(a.filePath(other))).ino
      await a.save(other, bytes)
      expect((await stat(a.filePath(other))).ino).not.toBe(otherIno)
      // without the option, every save writes
      const again = (await stat(file)).ino
      await plain.save(key, bytes)
      expect((await stat(file)).ino).not.toBe(again)
      expect(a.skipStats.skipped).toBe(1)
    } finally {
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
