import { afterEach, beforeEach, describe, expect, it, vi } from "vitest"
import * as A from "@automerge/automerge"
import { Repo, generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { promises as fsp } from "node:fs"
import { chmod, mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises"
import path from "node:path"
// automerge-repo's own hash functions (not exported from the package entry points)
import { headsHash as repoHeadsHash, keyHash as repoKeyHash } from "../../../node_modules/@automerge/automerge-repo/dist/storage/keyHash.js"
import { DocStore, StoreError, type WatchedChunk, headsHash, keyHash } from "../../../src/sync/store/DocStore.js"
import { ConcordStorageAdapter } from "../../../src/sync/storage/ConcordStorageAdapter.js"
import { listChunks } from "../../../src/sync/storage/chunk-format.js"
import { tempDir } from "../helpers.js"

type Plan = { jobs: Record<string, { status: string }>; [k: string]: unknown }

let dir: string
let cleanup: () => Promise<void>
let warnings: string[]
beforeEach(async () => {
  ;({ dir, cleanup } = await tempDir())
  warnings = []
})
afterEach(async () => {
  await cleanup()
})

const newDocId = () => parseAutomergeUrl(generateAutomergeUrl()).documentId as string
const docDir = (docId: string, ...rest: string[]) => path.join(dir, docId.slice(0, 2), docId.slice(2), ...rest)
const ls = async (p: string) => (await readdir(p).catch(() => [] as string[])).sort()

function store(opts: ConstructorParameters<typeof DocStore>[1] = {}) {
  return new DocStore(dir, { onWarning: m => warnings.push(m), ...opts })
}

/** Write `n` changes, each saved as its own incremental by a store that never compacts. */
async function writeChanges(docId: string, n: number, prefix = "j") {
  const s = store({ maxIncrementals: 1_000_000 })
  let doc = (await s.load<Plan>(docId)) ?? A.from<Plan>({ jobs: {} })
  for (let i = 0; i < n; i++) {
    doc = A.change(doc, d => {
      d.jobs[`${prefix}${i}`] = { status: "done" }
    })
    await s.save(docId, doc)
  }
  return doc
}

describe("DocStore basics", () => {
  it("saves and loads, with automerge-repo's key scheme", async () => {
    const s = store()
    const id = newDocId()
    expect(await s.load(id)).toBeUndefined()
    expect(await s.exists(id)).toBe(false)
    const doc = A.from<Plan>({ jobs: { a: { status: "todo" } } })
    await s.save(id, doc)
    const files = await ls(docDir(id, "incremental"))
    expect(files).toHaveLength(1)
    const bytes = await readFile(docDir(id, "incremental", files[0]))
    expect(files[0]).toBe(keyHash(bytes))
    expect(files[0]).toBe(repoKeyHash(bytes))
    expect(await s.exists(id)).toBe(true)
    const loaded = await store().load<Plan>(id)
    expect(A.toJS(loaded!)).toEqual({ jobs: { a: { status: "todo" } } })
    // saving the same heads again writes nothing
    await s.save(id, doc)
    expect(await ls(docDir(id, "incremental"))).toHaveLength(1)
    expect(warnings).toEqual([])
  })

  it("headsHash and keyHash match automerge-repo", () => {
    let d = A.from({ a: 1 })
    const other = A.change(A.clone(d), x => void (x.a = 2))
    d = A.change(d, x => void (x.a = 3))
    d = A.merge(d, other)
    expect(A.getHeads(d)).toHaveLength(2)
    expect(headsHash(A.getHeads(d))).toBe(repoHeadsHash(A.getHeads(d)))
    expect(headsHash([])).toBe(repoHeadsHash([]))
    const b = A.save(d)
    expect(keyHash(b)).toBe(repoKeyHash(b))
  })

  it("compacts many incrementals into a snapshot named by headsHash", async () => {
    const id = newDocId()
    const s = store()
    let doc = A.from<Plan>({ jobs: {} })
    for (let i = 0; i < 40; i++) {
      doc = A.change(doc, d => {
        d.jobs[`job-${i}`] = { status: `running ${"x".repeat(40)}` }
      })
      await s.save(id, doc)
    }
    const snaps = await ls(docDir(id, "snapshot"))
    expect(snaps.length).toBe(1)
    const incs = await ls(docDir(id, "incremental"))
    expect(incs.length).toBeLessThan(40)
    const loaded = await store().load<Plan>(id)
    expect(Object.keys(loaded!.jobs)).toHaveLength(40)
    // the last compaction's snapshot is named after the heads at that point
    const snapBytes = await readFile(docDir(id, "snapshot", snaps[0]))
    expect(snaps[0]).toBe(headsHash(A.getHeads(A.load(snapBytes))))
    // maxIncrementals also triggers compaction
    const id2 = newDocId()
    const s2 = store({ maxIncrementals: 3 })
    let d2 = A.from<Plan>({ jobs: {} })
    for (let i = 0; i < 4; i++) {
      d2 = A.change(d2, d => void (d.jobs[`j${i}`] = { status: "x" }))
      await s2.save(id2, d2)
    }
    expect(await ls(docDir(id2, "snapshot"))).toHaveLength(1)
    expect(await ls(docDir(id2, "incremental"))).toHaveLength(0)
    expect(warnings).toEqual([])
  })

  it("interoperates with automerge-repo's Repo in both directions", async () => {
    // DocStore writes, a Repo on ConcordStorageAdapter reads
    const url = generateAutomergeUrl()
    const id = parseAutomergeUrl(url).documentId as string
    await writeChanges(id, 5)
    const repo = new Repo({ storage: new ConcordStorageAdapter(dir), network: [] })
    const handle = await repo.find<Plan>(url)
    expect(Object.keys(handle.doc().jobs).sort()).toEqual(["j0", "j1", "j2", "j3", "j4"])
    await repo.shutdown()

    // a Repo on NodeFSStorageAdapter writes, DocStore reads
    const repo2 = new Repo({ storage: new NodeFSStorageAdapter(dir), network: [] })
    const h2 = repo2.create<Plan>({ jobs: { r: { status: "from-repo" } } })
    h2.change(d => void (d.jobs.r2 = { status: "again" }))
    await repo2.flush()
    await repo2.shutdown()
    const loaded = await store().load<Plan>(h2.documentId)
    expect(A.toJS(loaded!).jobs).toEqual({ r: { status: "from-repo" }, r2: { status: "again" } })
  })

  it("keeps changes saved from a document that is not a descendant of what was loaded", async () => {
    const id = newDocId()
    await writeChanges(id, 3)
    const s = store({ maxIncrementals: 1 })
    const loaded = await s.load<Plan>(id)
    expect(Object.keys(loaded!.jobs)).toHaveLength(3)
    // an unrelated document saved under the same id must not cause the loaded chunks to be deleted
    let stranger = A.from<Plan>({ jobs: {}, other: { s: 1 } })
    stranger = A.change(stranger, d => void ((d.other as Record<string, number>).t = 2))
    await s.save(id, stranger)
    await s.save(
      id,
      A.change(stranger, d => void ((d.other as Record<string, number>).u = 3))
    )
    const all = await store().load<Plan>(id)
    // (the two concurrent `jobs: {}` conflict and one wins; the j* changes are still on disk)
    expect(A.getHeads(all!)).toHaveLength(2)
    expect(all!.other).toEqual({ s: 1, t: 2, u: 3 })
    const withJobs = A.getConflicts(all!, "jobs")
    expect(Object.values(withJobs!).some(v => Object.keys(v as object).length === 3)).toBe(true)
  })
})

describe("DocStore with damaged chunks", () => {
  it("loads every good change despite a truncated and a garbage chunk, quarantines them, and compaction keeps all good changes", async () => {
    const id = newDocId()
    await writeChanges(id, 6)
    const inc = docDir(id, "incremental")
    expect(await ls(inc)).toHaveLength(6)

    // a truncated chunk (a real change of another branch, cut short) and a garbage chunk
    let branch = A.from<Plan>({ jobs: {} })
    const h = A.getHeads(branch)
    branch = A.change(branch, d => void (d.jobs.lost = { status: "never fully written" }))
    const torn = A.saveSince(branch, h).slice(0, 30)
    await writeFile(path.join(inc, keyHash(A.saveSince(branch, h))), torn)
    await writeFile(path.join(inc, "f".repeat(64)), "this is not automerge data")
    await writeFile(path.join(inc, "0".repeat(64)), new Uint8Array())

    // what automerge-repo does (concatenate everything, one loadIncremental): changes silently vanish
    const goodFiles = (await ls(inc)).filter(f => f !== "f".repeat(64) && f !== "0".repeat(64) && f !== keyHash(A.saveSince(branch, h)))
    const good = await Promise.all(goodFiles.map(f => readFile(path.join(inc, f))))
    const naive = A.loadIncremental(A.init<Plan>(), Buffer.concat([good[0], torn, ...good.slice(1)]))
    expect(Object.keys(naive.jobs ?? {}).length).toBeLessThan(6) // no error, changes silently missing

    const s = store({ maxIncrementals: 2, quarantineGraceMs: 0 })
    const doc = await s.load<Plan>(id)
    expect(Object.keys(doc!.jobs).sort()).toEqual(["j0", "j1", "j2", "j3", "j4", "j5"])
    const q = await ls(path.join(dir, "quarantine"))
    expect(q).toHaveLength(3)
    expect(warnings).toHaveLength(3)
    for (const name of [keyHash(A.saveSince(branch, h)), "f".repeat(64), "0".repeat(64)]) {
      expect(warnings.some(w => w.includes(path.join(inc, name)))).toBe(true)
      expect(q.some(f => f.startsWith(`${id}__incremental__${name}.`))).toBe(true)
    }
    expect(warnings.join("\n")).toMatch(/truncated/)
    expect(warnings.join("\n")).toMatch(/bad magic/)
    expect(warnings.join("\n")).toMatch(/empty file/)

    // save + compaction
    await s.save(
      id,
      A.change(doc!, d => void (d.jobs.after = { status: "new" }))
    )
    expect(await ls(docDir(id, "snapshot"))).toHaveLength(1)
    expect(await ls(inc)).toHaveLength(0)
    const again = await store().load<Plan>(id)
    expect(Object.keys(again!.jobs).sort()).toEqual(["after", "j0", "j1", "j2", "j3", "j4", "j5"])
  })

  it("detects an incremental cut at a chunk boundary by its content hash", async () => {
    const id = newDocId()
    await writeChanges(id, 2)
    let d = A.from<Plan>({ jobs: {} })
    const h = A.getHeads(d)
    d = A.change(d, x => void (x.jobs.a = { status: "1" }))
    d = A.change(d, x => void (x.jobs.b = { status: "2" }))
    const two = A.saveSince(d, h) // two change chunks
    const listed = listChunks(two)
    if (!listed.ok) throw new Error(listed.reason)
    expect(listed.chunks).toHaveLength(2)
    await writeFile(docDir(id, "incremental", keyHash(two)), two.subarray(0, listed.chunks[0].size))
    const doc = await store().load<Plan>(id)
    expect(Object.keys(doc!.jobs).sort()).toEqual(["j0", "j1"])
    expect(warnings.join("\n")).toMatch(/does not match the file name/)
  })

  it("never compacts a document with a missing-dependency chunk", async () => {
    const id = newDocId()
    let d = A.from<Plan>({ jobs: {} })
    const h0 = A.getHeads(d)
    const base = A.save(d)
    d = A.change(d, x => void (x.jobs.c1 = { status: "1" }))
    const h1 = A.getHeads(d)
    const c1 = A.saveSince(d, h0)
    d = A.change(d, x => void (x.jobs.c2 = { status: "2" }))
    const c2 = A.saveSince(d, h1)
    await mkdir(docDir(id, "snapshot"), { recursive: true })
    await mkdir(docDir(id, "incremental"), { recursive: true })
    await writeFile(docDir(id, "snapshot", headsHash(h0)), base)
    await writeFile(docDir(id, "incremental", keyHash(c2)), c2) // c1 is missing

    const s = store({ maxIncrementals: 1 })
    let doc = await s.load<Plan>(id)
    expect(Object.keys(doc!.jobs)).toEqual([]) // c2 cannot be applied without c1
    expect(A.getMissingDeps(doc!, A.getHeads(doc!))).toHaveLength(1)
    expect(warnings.join("\n")).toMatch(/missing/)
    for (let i = 0; i < 5; i++) {
      doc = A.change(doc!, x => void (x.jobs[`n${i}`] = { status: "x".repeat(300) }))
      await s.save(id, doc)
    }
    // nothing deleted, no snapshot replaced the chunks
    expect(await ls(docDir(id, "snapshot"))).toEqual([headsHash(h0)])
    expect(await ls(docDir(id, "incremental"))).toContain(keyHash(c2))
    expect(await ls(docDir(id, "incremental"))).toHaveLength(6)

    // a fresh load (also compaction-happy) is blocked too
    const s2 = store({ maxIncrementals: 1 })
    const d2 = await s2.load<Plan>(id)
    await s2.save(
      id,
      A.change(d2!, x => void (x.jobs.z = { status: "z" }))
    )
    expect(await ls(docDir(id, "incremental"))).toContain(keyHash(c2))
    expect(warnings.join("\n")).toMatch(/not compacting/)

    // once the missing change arrives, compaction proceeds and keeps everything
    await writeFile(docDir(id, "incremental", keyHash(c1)), c1)
    const s3 = store({ maxIncrementals: 1 })
    const d3 = await s3.load<Plan>(id)
    expect(A.getMissingDeps(d3!, A.getHeads(d3!))).toEqual([])
    await s3.save(
      id,
      A.change(d3!, x => void (x.jobs.last = { status: "l" }))
    )
    expect(await ls(docDir(id, "incremental"))).toEqual([])
    const final = await store().load<Plan>(id)
    expect(Object.keys(final!.jobs).sort()).toEqual(["c1", "c2", "last", "n0", "n1", "n2", "n3", "n4", "z"])
  })
})

describe("DocStore disk errors", () => {
  it("reports a StoreError when the store directory is below a regular file (ENOTDIR)", async () => {
    const file = path.join(dir, "not-a-dir")
    await writeFile(file, "x")
    const s = new DocStore(path.join(file, "store"), { onWarning: m => warnings.push(m) })
    const id = newDocId()
    const err = await s.save(id, A.from({ a: 1 })).catch(e => e)
    expect(err).toBeInstanceOf(StoreError)
    expect(err.code).toBe("ENOTDIR")
    expect(err.message).toMatch(new RegExp(`^cannot write ${file}/store/.*: not a directory`))
    expect(await s.load(id)).toBeUndefined()
    expect(await s.exists(id)).toBe(false)
    const w = s.watch([id], () => {}, { pollMs: 20 })
    await new Promise(r => setTimeout(r, 100))
    w.close()
    expect(warnings.join("\n")).toMatch(/ENOTDIR/)
  })

  it.skipIf(process.getuid?.() === 0)("reports EACCES for a read-only directory", async () => {
    const ro = path.join(dir, "ro")
    await mkdir(ro)
    await chmod(ro, 0o555)
    try {
      const err = await new DocStore(ro).save(newDocId(), A.from({ a: 1 })).catch(e => e)
      expect(err).toBeInstanceOf(StoreError)
      expect(err.code).toBe("EACCES")
      expect(err.message).toMatch(/permission denied \(EACCES\)/)
    } finally {
      await chmod(ro, 0o755)
    }
  })
})

describe("DocStore.watch (in process)", () => {
  it("sees writes of another DocStore and does not repeat what this instance loaded", async () => {
    const id = newDocId()
    await writeChanges(id, 2)
    const watcherStore = store()
    const loaded = await watcherStore.load<Plan>(id)
    const seen: Plan[] = []
    const w = watcherStore.watch<Plan>([id], (docId, doc) => {
      expect(docId).toBe(id)
      seen.push(A.toJS(doc))
      // the copy handed out is writable and independent of the watcher's own
      A.change(doc, d => void (d.jobs.local = { status: "mine" }))
    })
    try {
      await new Promise(r => setTimeout(r, 150))
      expect(seen).toEqual([]) // same heads as loaded: no initial call
      const writer = store()
      const wd = await writer.load<Plan>(id)
      await writer.save(
        id,
        A.change(wd!, d => void (d.jobs.x = { status: "new" }))
      )
      const t0 = Date.now()
      while (seen.length === 0 && Date.now() - t0 < 2000) await new Promise(r => setTimeout(r, 5))
      expect(seen.at(-1)!.jobs.x).toEqual({ status: "new" })
      expect(seen.at(-1)!.jobs.local).toBeUndefined()
      // a second watched doc, added later, that nobody loaded: initial state is reported
      const id2 = newDocId()
      await writeChanges(id2, 1)
      const seen2: string[] = []
      const w2 = watcherStore.watch<Plan>([], docId => seen2.push(docId))
      w2.add(id2)
      const t1 = Date.now()
      while (seen2.length === 0 && Date.now() - t1 < 2000) await new Promise(r => setTimeout(r, 5))
      expect(seen2).toEqual([id2])
      w2.close()
      expect(loaded).toBeDefined()
    } finally {
      w.close()
    }
    expect(warnings).toEqual([])
  })
})

describe("DocStore.watchChunks (in process)", () => {
  /** A store whose chunk-file reads are counted. */
  function countingStore(opts: ConstructorParameters<typeof DocStore>[1] = {}) {
    const s = store(opts)
    const reads: string[] = []
    const load = s.adapter.load.bind(s.adapter)
    s.adapter.load = async key => {
      reads.push(key.slice(1).join("/"))
      return load(key)
    }
    return { s, reads }
  }
  const waitFor = async (what: string, fn: () => boolean, ms = 3000) => {
    const t0 = Date.now()
    while (!fn()) {
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`)
      await new Promise(r => setTimeout(r, 5))
    }
  }

  it("hands over each new chunk file once, reading only that file, never what this instance loaded", async () => {
    const id = newDocId()
    await writeChanges(id, 3)
    const { s, reads } = countingStore()
    let mine = (await s.load<Plan>(id))!
    reads.length = 0
    const got: WatchedChunk[] = []
    const w = s.watchChunks([id], (docId, chunks) => {
      expect(docId).toBe(id)
      got.push(...chunks)
    })
    try {
      await new Promise(r => setTimeout(r, 150))
      expect(got).toEqual([]) // what the load read is not handed over again
      expect(reads).toEqual([])
      const writer = store({ maxIncrementals: 1_000_000 })
      let doc = (await writer.load<Plan>(id))!
      for (let i = 0; i < 5; i++) {
        doc = A.change(doc, d => void (d.jobs[`w${i}`] = { status: "new" }))
        await writer.save(id, doc)
        await waitFor(`chunk ${i}`, () => got.length === i + 1)
      }
      // one file per write (an incremental, or a snapshot when the writer compacted), each read once: the
      // earlier ones are neither read again nor handed over
      expect(new Set(got.map(c => c.file)).size).toBe(5)
      for (const c of got) if (c.type === "incremental") expect(c.file).toBe(`incremental/${keyHash(c.data)}`)
      expect(reads.sort()).toEqual(got.map(c => c.file).sort())
      // the chunks are what the writer wrote: applied to the loaded copy they give the writer's document
      for (const c of got) mine = A.loadIncremental(mine, c.data)
      expect(A.getHeads(mine).sort()).toEqual(A.getHeads(doc).sort())

      // another process compacts: its snapshot is handed over; it holds nothing the copy lacks but the new change
      const compactor = store({ maxIncrementals: 0 })
      doc = A.change((await compactor.load<Plan>(id))!, d => void (d.jobs.last = { status: "new" }))
      await compactor.save(id, doc)
      await waitFor("the snapshot", () => got.length === 6)
      const snap = got[5]
      expect(snap.type).toBe("snapshot")
      expect(snap.file).toBe(`snapshot/${headsHash(A.getHeads(doc))}`)
      mine = A.loadIncremental(mine, snap.data)
      expect(A.getHeads(mine).sort()).toEqual(A.getHeads(doc).sort())
      expect(A.toJS(mine)).toEqual(A.toJS(doc))
    } finally {
      w.close()
    }
    expect(warnings).toEqual([])
  })

  it("load, a write by another process, then watch: the first look hands over just that write; a store that never loaded gets every chunk", async () => {
    const id = newDocId()
    await writeChanges(id, 3)
    const { s, reads } = countingStore()
    await s.load<Plan>(id)
    reads.length = 0
    await writeChanges(id, 1, "late")
    const got: WatchedChunk[] = []
    const w = s.watchChunks([id], (_id, chunks) => got.push(...chunks))
    const fresh = countingStore()
    const all: WatchedChunk[] = []
    const w2 = fresh.s.watchChunks([], (_id, chunks) => all.push(...chunks))
    w2.add(id)
    try {
      await waitFor("the late write", () => got.length === 1)
      await waitFor("every chunk", () => all.length === 4)
      await new Promise(r => setTimeout(r, 100))
      expect(got).toHaveLength(1)
      expect(reads).toEqual([got[0].file])
      expect(all).toHaveLength(4)
      let doc = A.init<Plan>()
      for (const c of all) doc = A.loadIncremental(doc, c.data)
      expect(Object.keys(doc.jobs).sort()).toEqual(["j0", "j1", "j2", "late0"])
    } finally {
      w.close()
      w2.close()
    }
  })
})

describe("DocStore under concurrent compaction", () => {
  it("a compaction between listing incremental/ and snapshot/ cannot hide changes", async () => {
    const id = newDocId()
    const adapter = new ConcordStorageAdapter(dir)
    let d = A.from<Plan>({ jobs: {} })
    await adapter.save([id, "snapshot", headsHash(A.getHeads(d))], A.save(d))
    for (const j of ["a", "b"]) {
      const h = A.getHeads(d)
      d = A.change(d, x => void (x.jobs[j] = { status: j }))
      const inc = A.saveSince(d, h)
      await adapter.save([id, "incremental", keyHash(inc)], inc)
    }
    const compactor = store({ maxIncrementals: 1 })
    const cd = await compactor.load<Plan>(id)
    const reader = store()
    const original = reader.adapter.loadRange.bind(reader.adapter)
    let calls = 0
    reader.adapter.loadRange = async prefix => {
      const result = await original(prefix)
      if (calls++ === 0) {
        // another process compacts right after the reader's first listing
        await compactor.save(
          id,
          A.change(cd!, x => void (x.jobs.c = { status: "c" }))
        )
        expect(await ls(docDir(id, "incremental"))).toEqual([])
      }
      return result
    }
    const got = await reader.load<Plan>(id)
    expect(Object.keys(got!.jobs).sort()).toEqual(expect.arrayContaining(["a", "b"]))
  })

  it("a load never returns less than what was saved before it started", async () => {
    const id = newDocId()
    const writer = store({ maxIncrementals: 2 })
    let doc = A.from<{ n: number; log: Record<string, number> }>({ n: 0, log: {} })
    await writer.save(id, doc)
    let acked = 0
    let stop = false
    const writing = (async () => {
      for (let i = 1; i <= 150; i++) {
        doc = A.change(doc, d => {
          d.n = i
          d.log[`e${i}`] = i
        })
        await writer.save(id, doc) // compacts every few saves: snapshot written, old chunks deleted
        acked = i
      }
      stop = true
    })()
    const reader = store()
    let loads = 0
    while (!stop) {
      const before = acked
      const got = await reader.load<{ n: number; log: Record<string, number> }>(id)
      expect(got!.n).toBeGreaterThanOrEqual(before)
      expect(Object.keys(got!.log).length).toBeGreaterThanOrEqual(before)
      loads++
    }
    await writing
    expect(loads).toBeGreaterThan(5)
    expect(warnings).toEqual([])
  })
})

describe("DocStore.watch edge cases", () => {
  const waitUntil = async (cond: () => boolean, ms = 2000) => {
    const t0 = Date.now()
    while (!cond() && Date.now() - t0 < ms) await new Promise(r => setTimeout(r, 5))
    return cond()
  }

  it("holds a change whose dependency arrives later, and reports both once it does", async () => {
    const id = newDocId()
    let d = A.from<Plan>({ jobs: {} })
    await store().save(id, d)
    const h0 = A.getHeads(d)
    d = A.change(d, x => void (x.jobs.c1 = { status: "1" }))
    const h1 = A.getHeads(d)
    const c1 = A.saveSince(d, h0)
    d = A.change(d, x => void (x.jobs.c2 = { status: "2" }))
    const c2 = A.saveSince(d, h1)
    const seen: Plan[] = []
    const w = store().watch<Plan>([id], (_id, doc) => seen.push(A.toJS(doc)), { pollMs: 50 })
    try {
      expect(await waitUntil(() => seen.length === 1)).toBe(true) // initial state (not loaded by this store)
      const adapter = new ConcordStorageAdapter(dir)
      await adapter.save([id, "incremental", keyHash(c2)], c2)
      await new Promise(r => setTimeout(r, 200))
      expect(seen).toHaveLength(1) // c2 is waiting for c1: heads unchanged
      await adapter.save([id, "incremental", keyHash(c1)], c1)
      expect(await waitUntil(() => seen.length === 2)).toBe(true)
      expect(Object.keys(seen[1].jobs).sort()).toEqual(["c1", "c2"])
    } finally {
      w.close()
    }
  })

  it("watching more documents than one poll looks at (it polls them in slices), every document's writes are seen", async () => {
    const ids = Array.from({ length: 150 }, () => newDocId())
    const writer = store()
    const docs = new Map(ids.map(id => [id, A.from<Plan>({ jobs: {} })]))
    for (const id of ids) await writer.save(id, docs.get(id)!)
    const seen = new Map<string, number>()
    const w = store().watch<Plan>(ids, (id, doc) => seen.set(id, Object.keys(A.toJS(doc).jobs).length), { pollMs: 50 })
    try {
      expect(await waitUntil(() => seen.size === ids.length, 10_000)).toBe(true)
      // the last document's directory is replaced under the watcher (its fs.watch watches the old one),
      // then written: the poll, which reaches this document in its third slice, watches the new one
      const last = ids.at(-1)!
      await rename(docDir(last, "incremental"), docDir(last, "incremental-old"))
      const d = A.change(docs.get(last)!, x => void (x.jobs.late = { status: "x" }))
      await writer.save(last, d)
      expect(await waitUntil(() => seen.get(last) === 1, 10_000)).toBe(true)
      // and a write to the first document is seen as before
      await writer.save(
        ids[0],
        A.change(docs.get(ids[0])!, x => void (x.jobs.a = { status: "x" }))
      )
      expect(await waitUntil(() => seen.get(ids[0]) === 1, 10_000)).toBe(true)
    } finally {
      w.close()
    }
  })

  it("keeps up when other processes compact the chunks it has read", async () => {
    const id = newDocId()
    const writer = store({ maxIncrementals: 2 })
    let d = A.from<Plan>({ jobs: {} })
    await writer.save(id, d)
    let latest: Plan | undefined
    const w = store().watch<Plan>([id], (_id, doc) => (latest = A.toJS(doc)), { pollMs: 50 })
    try {
      for (let i = 0; i < 12; i++) {
        d = A.change(d, x => void (x.jobs[`j${i}`] = { status: "x" }))
        await writer.save(id, d)
        await new Promise(r => setTimeout(r, 15))
      }
      expect(await waitUntil(() => Object.keys(latest?.jobs ?? {}).length === 12)).toBe(true)
      expect((await ls(docDir(id, "snapshot"))).length).toBeGreaterThan(0)
    } finally {
      w.close()
    }
    expect(warnings).toEqual([])
  })
})

describe("DocStore load times", () => {
  it("measures load of a 1,000-change doc from one snapshot and from 64 incremental files", async () => {
    const timeLoad = async (id: string) => {
      const times: number[] = []
      let doc: A.Doc<Plan> | undefined
      for (let i = 0; i < 3; i++) {
        const t = performance.now()
        doc = await store().load<Plan>(id)
        times.push(performance.now() - t)
      }
      return { doc: doc!, ms: times.sort((a, b) => a - b)[1] }
    }
    const id = newDocId()
    let doc = A.from<Plan>({ jobs: {} })
    for (let i = 0; i < 1000; i++) doc = A.change(doc, d => void (d.jobs[`j${i % 100}`] = { status: `s${i}` }))
    await store().save(id, doc) // > 1 KiB: written as a snapshot
    expect(await ls(docDir(id, "snapshot"))).toHaveLength(1)
    const snap = await timeLoad(id)
    expect(A.getHeads(snap.doc)).toEqual(A.getHeads(doc))

    const id2 = newDocId()
    const adapter = new ConcordStorageAdapter(dir)
    let d2 = A.from<Plan>({ jobs: {} })
    let saved = A.save(d2)
    await adapter.save([id2, "incremental", keyHash(saved)], saved)
    for (let i = 0; i < 63; i++) {
      const heads = A.getHeads(d2)
      for (let k = 0; k < 16; k++) d2 = A.change(d2, d => void (d.jobs[`j${k}`] = { status: `s${i}` }))
      saved = A.saveSince(d2, heads)
      await adapter.save([id2, "incremental", keyHash(saved)], saved)
    }
    expect(await ls(docDir(id2, "incremental"))).toHaveLength(64)
    const incs = await timeLoad(id2)
    expect(A.getHeads(incs.doc)).toEqual(A.getHeads(d2))
    console.log(
      `[measure] DocStore.load (median of 3): 1,000 changes from 1 snapshot ${snap.ms.toFixed(1)} ms; ` +
        `1,009 changes in 64 incremental files ${incs.ms.toFixed(1)} ms`
    )
  })
})

describe("DocStore compaction by change count, and update()", () => {
  it("compacts when incrementals hold more changes than maxIncrementalChanges, and loads the snapshot back", async () => {
    const id = newDocId()
    const s = store({ maxIncrementalChanges: 2, maxIncrementals: 1_000 })
    let d = A.change(A.init<{ n: number[] }>(), x => void (x.n = []))
    for (let i = 0; i < 4; i++) d = A.change(d, x => void x.n.push(i))
    await s.save(id, d)
    d = A.change(d, x => void x.n.push(4))
    await s.save(id, d) // one more change: 1 change in incrementals, small: no compaction
    expect(await ls(docDir(id, "incremental"))).toHaveLength(2)
    d = A.change(d, x => void x.n.push(5))
    d = A.change(d, x => void x.n.push(6))
    await s.save(id, d) // 3 changes in incrementals > 2: compacted
    expect(await ls(docDir(id, "snapshot"))).toHaveLength(1)
    expect(await ls(docDir(id, "incremental"))).toHaveLength(0)
    expect((await store().load<{ n: number[] }>(id))?.n).toEqual([0, 1, 2, 3, 4, 5, 6])
  })

  it("update() makes every change of one instance with one actor, and writes nothing when fn throws", async () => {
    const id = newDocId()
    const s = store()
    await s.update<{ n: number[] }, A.Doc<{ n: number[] }>>(id, (doc, actor) => A.change(doc ?? A.init({ actor: actor as A.ActorId }), x => void (x.n = [])))
    await Promise.all(Array.from({ length: 6 }, (_, i) => s.update<{ n: number[] }, A.Doc<{ n: number[] }>>(id, doc => A.change(doc!, x => void x.n.push(i)))))
    await expect(
      s.update(id, () => {
        throw new Error("no")
      })
    ).rejects.toThrow("no")
    const back = await store().load<{ n: number[] }>(id)
    expect([...back!.n].sort()).toEqual([0, 1, 2, 3, 4, 5])
    expect(new Set(A.getAllChanges(back!).map(c => A.decodeChange(c).actor)).size).toBe(1)
  })
})

describe("DocStore's ready option (a process that starts Automerge while it reads the store)", () => {
  it("a load reads its chunk files, then waits for ready before it calls Automerge", async () => {
    const id = newDocId()
    await writeChanges(id, 3)
    let open!: () => void
    const ready = new Promise<void>(r => (open = r))
    let loaded: A.Doc<Plan> | undefined
    const loading = store({ ready })
      .load<Plan>(id)
      .then(d => (loaded = d))
    await new Promise(r => setTimeout(r, 200))
    expect(loaded).toBeUndefined() // still waiting
    // its files were read before: removed now, they are still in what it loads
    const files = await ls(docDir(id, "incremental"))
    expect(files.length).toBe(3)
    for (const f of files) await rename(docDir(id, "incremental", f), path.join(dir, f))
    open()
    await loading
    expect(Object.keys(loaded!.jobs).sort()).toEqual(["j0", "j1", "j2"])
  })

  it("a ready that fails: loads and updates fail with its error, nothing is called or written", async () => {
    const id = newDocId()
    await writeChanges(id, 1)
    const before = await ls(docDir(id, "incremental"))
    const broken = new Error("no WebAssembly")
    const ready = Promise.reject(broken)
    ready.catch(() => {})
    const s = store({ ready })
    await expect(s.load(id)).rejects.toBe(broken)
    let called = false
    await expect(
      s.update<Plan, A.Doc<Plan>>(id, d => {
        called = true
        return A.change(d!, x => {
          x.jobs.new = { status: "x" }
        })
      })
    ).rejects.toBe(broken)
    expect(called).toBe(false)
    expect(await ls(docDir(id, "incremental"))).toEqual(before)
  })
})

describe("DocStore.loadBackend with what it holds (the sync server's kept copies)", () => {
  /** A DocStore whose chunk-file reads (opens of files under the store) are counted. */
  function countingReads(s: DocStore) {
    const opened: string[] = []
    const open = fsp.open.bind(fsp)
    const spy = vi.spyOn(fsp, "open").mockImplementation((async (file: Parameters<typeof fsp.open>[0], ...rest: unknown[]) => {
      const f = String(file)
      if (f.startsWith(s.dir)) opened.push(path.relative(s.dir, f).split(path.sep).slice(2).join("/"))
      return (open as (...a: unknown[]) => ReturnType<typeof fsp.open>)(file, ...rest)
    }) as typeof fsp.open)
    return { opened, restore: () => spy.mockRestore() }
  }
  const headsOf = (r: { raw: ReturnType<typeof A.getBackend> } | undefined) => r?.raw.getHeads().sort()
  const files = async (id: string) =>
    [...(await ls(docDir(id, "incremental"))).map(f => `incremental/${f}`), ...(await ls(docDir(id, "snapshot"))).map(f => `snapshot/${f}`)].sort()

  it("reads no chunk file again: a repeated load lists, and reads only a file another writer added", async () => {
    const id = newDocId()
    await writeChanges(id, 4)
    const s = store()
    const reads = countingReads(s)
    try {
      const first = (await s.loadBackend(id))!
      expect(reads.opened.sort()).toEqual(await files(id))
      expect([...first.keys].sort()).toEqual(await files(id))
      reads.opened.length = 0
      const second = (await s.loadBackend(id, first))!
      expect(reads.opened).toEqual([]) // nothing new: nothing read
      expect([...second.keys].sort()).toEqual(await files(id))
      expect(headsOf(second)).toEqual(headsOf(await store().loadBackend(id)))

      // another writer adds a change: only its file is read
      const before = new Set(await files(id))
      await writeChanges(id, 1, "late")
      const added = (await files(id)).filter(f => !before.has(f))
      expect(added).toHaveLength(1)
      reads.opened.length = 0
      const third = (await s.loadBackend(id, second))!
      expect(reads.opened).toEqual(added)
      expect([...third.keys].sort()).toEqual(await files(id))
      expect(headsOf(third)).toEqual(headsOf(await store().loadBackend(id)))
      const doc = A.load<Plan>(third.raw.save())
      expect(Object.keys(doc.jobs).sort()).toEqual(["j0", "j1", "j2", "j3", "late0"])
    } finally {
      reads.restore()
    }
    expect(warnings).toEqual([])
  })

  it("another DocStore compacts between two loads: the same heads as a fresh load, and the keys are the files left", async () => {
    const id = newDocId()
    await writeChanges(id, 5)
    const s = store()
    const first = (await s.loadBackend(id))!
    const compactor = store({ maxIncrementals: 0 })
    const doc = A.change((await compactor.load<Plan>(id))!, d => void (d.jobs.compacted = { status: "new" }))
    await compactor.save(id, doc)
    expect(await ls(docDir(id, "incremental"))).toEqual([])
    const reads = countingReads(s)
    try {
      const again = (await s.loadBackend(id, first))!
      expect(reads.opened).toEqual(await files(id)) // the snapshot only
      expect([...again.keys].sort()).toEqual(await files(id)) // the compacted-away files are not held any more
      expect(headsOf(again)).toEqual(A.getHeads(doc).sort())
      expect(headsOf(again)).toEqual(headsOf(await store().loadBackend(id)))
    } finally {
      reads.restore()
    }
  })

  it("a compaction between its listing of incremental/ and snapshot/ hides nothing", async () => {
    const id = newDocId()
    await writeChanges(id, 3)
    const s = store()
    const first = (await s.loadBackend(id))!
    // a change of another writer the copy lacks, compacted away (with the rest) right after the listing
    await writeChanges(id, 1, "late")
    const compactor = store({ maxIncrementals: 0 })
    const cd = (await compactor.load<Plan>(id))!
    const original = s.adapter.loadRangeExcept.bind(s.adapter)
    let calls = 0
    s.adapter.loadRangeExcept = async (prefix, known) => {
      const result = await original(prefix, known)
      if (calls++ === 0) {
        await compactor.save(
          id,
          A.change(cd, x => void (x.jobs.c = { status: "c" }))
        )
        expect(await ls(docDir(id, "incremental"))).toEqual([])
      }
      return result
    }
    const again = (await s.loadBackend(id, first))!
    const doc = A.load<Plan>(again.raw.save())
    expect(Object.keys(doc.jobs).sort()).toEqual(["c", "j0", "j1", "j2", "late0"])
    expect(headsOf(again)).toEqual(headsOf(await store().loadBackend(id)))
  })

  it("a damaged new file is skipped with a warning and left on disk, never among the keys; the good new ones are read", async () => {
    const id = newDocId()
    await writeChanges(id, 2)
    const s = store()
    const first = (await s.loadBackend(id))!
    await writeChanges(id, 1, "good")
    const bad = docDir(id, "incremental", "f".repeat(64))
    await writeFile(bad, "this is not automerge data")
    const again = (await s.loadBackend(id, first))!
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatch(/skipping damaged Automerge chunk/)
    expect(warnings[0]).toContain(bad)
    expect(await ls(docDir(id, "incremental"))).toContain("f".repeat(64))
    expect(again.keys.has(`incremental/${"f".repeat(64)}`)).toBe(false)
    expect(Object.keys(A.load<Plan>(again.raw.save()).jobs).sort()).toEqual(["good0", "j0", "j1"])
    // as a fresh load finds it
    const fresh = store()
    expect(headsOf(await fresh.loadBackend(id))).toEqual(headsOf(again))
  })
})
