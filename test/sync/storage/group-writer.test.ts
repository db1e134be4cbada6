import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { readdir } from "node:fs/promises"
import path from "node:path"
import { fileURLToPath } from "node:url"
import * as A from "@automerge/automerge"
import { describe, expect, it } from "vitest"
import { groupWriter } from "../../../src/sync/storage/group-writer.js"
import { groupWritesAdapter, tempDir } from "../helpers.js"

const ROOT = fileURLToPath(new URL("../../..", import.meta.url))

/** Block this thread (no event loop turn) until `done()` or `ms` passed; whether `done()` became true. */
function blockUntil(done: () => boolean, ms: number): boolean {
  const wait = new Int32Array(new SharedArrayBuffer(4))
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (done()) return true
    Atomics.wait(wait, 0, 0, 5)
  }
  return done()
}

describe("group writes on the writer thread", () => {
  it("a group's files are written while the caller's thread is busy elsewhere (every step is on the writer's thread)", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const docs = ["abcdef", "ghijkl", "mnopqr"]
      const a = await groupWritesAdapter(dir, docs)
      const bytes = docs.map((d, i) => A.save(A.from({ d, i })))
      const targets = docs.map(d => a.filePath([d, "incremental", "grouped"]))
      // once the group is handed to the writer, this thread holds still: the files can only appear if
      // another thread writes them
      let appeared: boolean | undefined
      const write = groupWriter.write
      groupWriter.write = files => {
        const out = write.call(groupWriter, files)
        appeared = blockUntil(() => targets.every(t => existsSync(t)), 10_000)
        return out
      }
      try {
        await Promise.all(docs.map((d, i) => a.save([d, "incremental", "grouped"], bytes[i])))
      } finally {
        groupWriter.write = write
      }
      expect(appeared).toBe(true)
      for (const [i, d] of docs.entries()) expect(await a.load([d, "incremental", "grouped"])).toEqual(bytes[i])
      expect(await readdir(a.tmpDirectory)).toEqual([])
    } finally {
      await cleanup()
    }
  })

  it("a writer thread that dies leaves its groups to the usual path (every save still durable and exact); the next group starts another thread", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const docs = ["abcdef", "ghijkl"]
      const a = await groupWritesAdapter(dir, docs)
      const keys = Array.from({ length: 6 }, (_, i) => [docs[i % 2], "incremental", `k${i}`])
      const bytes = keys.map((_, i) => A.save(A.from({ i })))
      const saves = Promise.all(keys.map((k, i) => a.save(k, bytes[i])))
      await new Promise(r => setImmediate(r)) // the group is on its way to the thread
      const started = groupWriter.started
      await groupWriter.stop()
      await saves
      for (const [i, k] of keys.entries()) expect(await a.load(k)).toEqual(bytes[i])
      // nothing but (possibly) the temp files of the thread's unfinished steps, which are never chunks
      for (const f of await readdir(a.tmpDirectory)) expect(f).toMatch(/\.tmp$/)
      // the next group is written by a new thread
      const groups = a.groupStats.groups
      await Promise.all(docs.map(d => a.save([d, "incremental", "after"], bytes[0])))
      expect(groupWriter.started).toBe(started + 1)
      expect(a.groupStats.groups).toBe(groups + 1)
      expect(a.groupStats.files).toBeGreaterThanOrEqual(2)
      for (const d of docs) expect(await a.load([d, "incremental", "after"])).toEqual(bytes[0])
    } finally {
      await cleanup()
    }
  })

  it("an idle writer thread does not keep its process alive", async () => {
    const { dir, cleanup } = await tempDir()
    try {
      const script = `
        const { ConcordStorageAdapter } = await import(${JSON.stringify(path.join(ROOT, "src/sync/storage/ConcordStorageAdapter.ts"))})
        const a = new ConcordStorageAdapter(${JSON.stringify(dir)}, { groupWrites: true })
        await a.save(["abcdef", "incremental", "one"], new Uint8Array([1, 2, 3]))
        await Promise.all([a.save(["abcdef", "incremental", "two"], new Uint8Array([4])), a.save(["abcdef", "incremental", "three"], new Uint8Array([5]))])
        console.log(JSON.stringify(a.groupStats))
      `
      const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      let err = ""
      child.stdout.on("data", d => (out += d))
      child.stderr.on("data", d => (err += d))
      const code = await new Promise<number | null>(resolve => {
        const t = setTimeout(() => {
          child.kill("SIGKILL")
          resolve(null)
        }, 20_000)
        child.on("exit", c => {
          clearTimeout(t)
          resolve(c)
        })
      })
      expect({ code, err }).toEqual({ code: 0, err: "" })
      // (the first save made the directory, the usual way; the two after it went together, through the thread)
      expect(JSON.parse(out)).toMatchObject({ files: 2, fileSyncs: 2, dirSyncs: 1 })
      expect(existsSync(path.join(dir, "ab", "cdef", "incremental", "three"))).toBe(true)
    } finally {
      await cleanup()
    }
  })
})
