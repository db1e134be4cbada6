import { describe, expect, it } from "vitest"
import fc from "fast-check"
import * as A from "@automerge/automerge"
import { deflateRawSync } from "node:zlib"
import { listChunks, verifyAutomergeBytes } from "../../../src/sync/storage/chunk-format.js"

function sampleDoc() {
  let d = A.from<{ [k: string]: unknown }>({ title: "plan", n: 1 })
  const h0 = A.getHeads(d)
  d = A.change(d, x => {
    x.n = 2
  })
  d = A.change(d, x => {
    x.big = "x".repeat(400)
  })
  return { d, h0 }
}

function uleb(n: number): number[] {
  const out: number[] = []
  do {
    let b = n & 0x7f
    n = Math.floor(n / 128)
    if (n) b |= 0x80
    out.push(b)
  } while (n)
  return out
}

describe("verifyAutomergeBytes", () => {
  it("accepts what Automerge writes", () => {
    const { d, h0 } = sampleDoc()
    const save = A.save(d)
    const since = A.saveSince(d, h0)
    expect(listChunks(since)).toMatchObject({ ok: true, chunks: [{ type: 1 }, { type: 1 }] })
    for (const bytes of [
      save,
      since,
      A.save(A.init()),
      A.getLastLocalChange(d)!,
      ...A.getAllChanges(d),
      A.saveBundle(
        d,
        A.getAllChanges(d).map(c => A.decodeChange(c).hash!)
      ),
      new Uint8Array([...save, ...since]), // concatenation, as automerge-repo does
    ]) {
      expect(verifyAutomergeBytes(bytes)).toEqual({ ok: true })
    }
  })

  it("accepts a compressed change chunk (checksum of the uncompressed change) and rejects a bad one", () => {
    const { d } = sampleDoc()
    const change = A.getLastLocalChange(d)!
    const { chunks } = listChunks(change) as { ok: true; chunks: { size: number; length: number }[] }
    const data = change.subarray(chunks[0].size - chunks[0].length)
    const compressed = deflateRawSync(data)
    const good = new Uint8Array([...change.subarray(0, 8), 2, ...uleb(compressed.length), ...compressed])
    expect(verifyAutomergeBytes(good)).toEqual({ ok: true })
    // Automerge itself accepts it
    const all = A.getAllChanges(d)
    const base = A.applyChanges(A.init(), all.slice(0, -1))[0]
    expect((A.loadIncremental(base, good) as { big?: string }).big).toBe("x".repeat(400))
    const bad = good.slice()
    bad[5] ^= 1
    expect(verifyAutomergeBytes(bad)).toMatchObject({ ok: false, reason: expect.stringMatching(/checksum/) })
    const garbled = good.slice()
    garbled[garbled.length - 2] ^= 0xff
    expect(verifyAutomergeBytes(garbled).ok).toBe(false)
  })

  it("rejects every truncation of a small chunk", () => {
    const { d } = sampleDoc()
    for (const bytes of [A.save(A.from({ a: 1, s: "hello" })), A.save(d), A.getLastLocalChange(d)!]) {
      expect(listChunks(bytes)).toMatchObject({ ok: true, chunks: [{}] })
      for (let cut = 0; cut < bytes.length; cut++) {
        const r = verifyAutomergeBytes(bytes.subarray(0, cut))
        expect(r.ok, `cut at ${cut} of ${bytes.length}`).toBe(false)
      }
    }
  })

  it("a multi-chunk file cut exactly at a chunk boundary is indistinguishable from a shorter valid file", () => {
    // (which is why the storage adapter also checks an incremental's sha256 against its file name)
    const { d, h0 } = sampleDoc()
    const bytes = A.saveSince(d, h0)
    const listed = listChunks(bytes) as { ok: true; chunks: { offset: number; size: number }[] }
    const boundaries = new Set(listed.chunks.map(c => c.offset + c.size))
    expect(listed.chunks.length).toBe(2)
    for (let cut = 0; cut < bytes.length; cut++) {
      expect(verifyAutomergeBytes(bytes.subarray(0, cut)).ok, `cut ${cut}`).toBe(boundaries.has(cut))
    }
  })

  it("rejects zero-length, garbage and appended garbage", () => {
    const good = A.save(A.from({ a: 1 }))
    expect(verifyAutomergeBytes(new Uint8Array())).toEqual({ ok: false, reason: "empty file (0 bytes)" })
    expect(verifyAutomergeBytes(new TextEncoder().encode("hello world, not automerge")).ok).toBe(false)
    expect(verifyAutomergeBytes(new Uint8Array(4096)).ok).toBe(false)
    for (const tail of [[0], [0x85], [0x85, 0x6f, 0x4a, 0x83], [...good.subarray(0, 12)], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]) {
      const r = verifyAutomergeBytes(new Uint8Array([...good, ...tail]))
      expect(r.ok, `tail ${tail.length}`).toBe(false)
    }
    // unknown chunk type
    const t = good.slice()
    t[8] = 7
    expect(verifyAutomergeBytes(t)).toMatchObject({ ok: false, reason: expect.stringMatching(/unknown chunk type 7/) })
  })

  it("rejects any single-byte change (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 8 }), fc.oneof(fc.integer(), fc.string({ maxLength: 50 }))), {
          minLength: 1,
          maxLength: 10,
        }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (entries, pos, xor) => {
          let doc = A.init<Record<string, unknown>>()
          for (const [k, v] of entries) doc = A.change(doc, x => void (x[k] = v))
          const bytes = entries.length % 2 ? A.save(doc) : A.saveSince(doc, [])
          expect(verifyAutomergeBytes(bytes).ok).toBe(true)
          const bad = bytes.slice()
          bad[pos % bad.length] ^= xor
          return verifyAutomergeBytes(bad).ok === false
        }
      ),
      { numRuns: 300 }
    )
  })
})
