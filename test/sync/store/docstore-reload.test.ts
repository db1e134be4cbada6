/** Repeated loads in one process read only new chunk files, and stay exactly what is on disk. */
import * as A from "@automerge/automerge"
import { mkdtempSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { newDocId } from "../../../src/doc/ids.js"
import { DocStore } from "../../../src/sync/store/DocStore.js"

type D = { n: Record<string, number> }
let dir: string
afterEach(() => rmSync(dir, { recursive: true, force: true }))

async function write(store: DocStore, id: string, key: string, v: number) {
  const doc = (await store.load<D>(id))!
  await store.save(
    id,
    A.change(doc, d => (d.n[key] = v))
  )
}

describe("DocStore repeated loads", () => {
  it("see other instances' writes and compactions, and are isolated from unsaved changes", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "docstore-reload-"))
    const id = newDocId()
    const reader = new DocStore(dir, { onWarning: () => {} })
    const writer = new DocStore(dir, { onWarning: () => {}, maxIncrementals: 4 })
    await writer.save(id, A.from<D>({ n: {} }))
    expect((await reader.load<D>(id))!.n).toEqual({})

    // New chunks from another instance appear in the next load.
    for (let i = 0; i < 3; i++) await write(writer, id, `w${i}`, i)
    expect((await reader.load<D>(id))!.n).toEqual({ w0: 0, w1: 1, w2: 2 })

    // The writer compacts (it deletes chunks the reader had loaded); nothing is lost for the reader.
    for (let i = 3; i < 12; i++) await write(writer, id, `w${i}`, i)
    const afterCompaction = (await reader.load<D>(id))!.n
    expect(Object.keys(afterCompaction)).toHaveLength(12)

    // A loaded doc changed and never saved does not leak into the next load.
    const scratch = (await reader.load<D>(id))!
    A.change(scratch, d => (d.n.unsaved = 1))
    expect((await reader.load<D>(id))!.n.unsaved).toBeUndefined()

    // The reader's own writes and a fresh instance agree.
    await write(reader, id, "r", 99)
    const fresh = (await new DocStore(dir, { onWarning: () => {} }).load<D>(id))!
    expect(fresh.n).toEqual({ ...afterCompaction, r: 99 })
    expect((await reader.load<D>(id))!.n).toEqual(fresh.n)
  })
})
