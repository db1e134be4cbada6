/**
 * A sync message lost on a live connection (the network chaos run's "p2 never received 3 acknowledged
 * reports"). Automerge's sync state remembers the changes as sent, so on that connection they are never
 * sent again: without a cure the peer stays behind for good (nothing else happens) or livelocks asking
 * for them (more changes come). Real `concord serve`, real `concord sync --watch`, real sockets, and a
 * proxy that understands WebSocket frames and drops exactly one server-to-client sync message carrying
 * changes of the report log.
 */
import * as A from "@automerge/automerge"
import net from "node:net"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { reportDocId } from "../../../src/doc/ids.js"
import { readReports } from "../../../src/doc/reports.js"
import { decodeFrame } from "../../../src/sync/net/protocol.js"
import { DivergenceWatch, SyncStallDetector } from "../../../src/sync/net/stall.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { addTokenCli, createPlanCli, ok, rm, spawnConcord, startServerProcess, tempRoot, until } from "./helpers.js"

const roots: string[] = []
afterAll(() => roots.forEach(rm))

/**
 * TCP proxy that parses the server's WebSocket frames (unmasked, no extensions) and drops the next
 * binary frame that is a sync message with changes for `docId`, each time `armDrop()` was called.
 */
async function frameDroppingProxy(targetPort: number, docId: string) {
  const sockets = new Set<net.Socket>()
  let armed = 0
  let dropped = 0
  const server = net.createServer(client => {
    const upstream = net.connect(targetPort, "127.0.0.1")
    sockets.add(client).add(upstream)
    const kill = () => {
      client.destroy()
      upstream.destroy()
    }
    for (const s of [client, upstream]) s.on("error", kill).on("close", kill)
    client.pipe(upstream)
    let buf = Buffer.alloc(0)
    let handshake = true
    let raw = false // plain HTTP (the API calls): passed through untouched
    upstream.on("data", (chunk: Buffer) => {
      if (raw) return void client.write(chunk)
      buf = Buffer.concat([buf, chunk])
      if (handshake) {
        const end = buf.indexOf("\r\n\r\n")
        if (end < 0) return
        raw = !buf.subarray(0, 12).toString().startsWith("HTTP/1.1 101")
        client.write(raw ? buf : buf.subarray(0, end + 4))
        buf = buf.subarray(end + 4)
        handshake = false
        if (raw) return
      }
      for (;;) {
        if (buf.length < 2) return
        let len = buf[1] & 0x7f
        let off = 2
        if (len === 126) {
          if (buf.length < 4) return
          len = buf.readUInt16BE(2)
          off = 4
        } else if (len === 127) {
          if (buf.length < 10) return
          len = Number(buf.readBigUInt64BE(2))
          off = 10
        }
        if (buf.length < off + len) return
        const frame = buf.subarray(0, off + len)
        buf = buf.subarray(off + len)
        if (armed > 0 && (frame[0] & 0x0f) === 2) {
          try {
            const m = decodeFrame(frame.subarray(off)) as { type?: string; documentId?: string; data?: Uint8Array }
            if (m.type === "sync" && m.documentId === docId && m.data && A.decodeSyncMessage(m.data).changes.length > 0) {
              armed--
              dropped++
              continue
            }
          } catch {
            // not a message we look at
          }
        }
        client.write(frame)
      }
    })
  })
  await new Promise<void>(r => server.listen(0, "127.0.0.1", r))
  return {
    port: (server.address() as net.AddressInfo).port,
    armDrop: () => void armed++,
    dropped: () => dropped,
    close() {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}

async function messages(store: string, planId: string): Promise<string[]> {
  const s = new PlanStore(store, { onWarning: () => {} })
  return readReports(await s.loadReports(planId as never, "A")).map(r => r.message ?? "")
}

describe("a sync message lost on a live connection", () => {
  it("sync --watch gets the lost changes again: quietly (anti-entropy) and while more changes come (stall detector)", async () => {
    const root = tempRoot()
    roots.push(root)
    const [S, P] = ["server", "peer"].map(n => path.join(root, n))
    const id = await createPlanCli(S, 'name: lost\njobs:\n  - { name: A, run: "true" }\n')
    await ok(S, ["report", "progress", "r0", "--job", "A", "--plan", id])
    const token = await addTokenCli(S, id, "writer")
    const server = await startServerProcess(S)
    await ok(P, ["sync", server.url, "--token", token, "--quiet"])
    expect(await messages(P, id)).toEqual(["r0"])

    const proxy = await frameDroppingProxy(server.port, reportDocId(id, "A"))
    const watch = spawnConcord(P, ["sync", `ws://127.0.0.1:${proxy.port}`, "--token", token, "--watch"], { env: { CONCORD_DEBUG: "1" } })
    try {
      await until("sync --watch to be watching", () => /watching 1 plan/.test(watch.output().stderr))

      // 1. one message lost, nothing else happens: the anti-entropy check notices within seconds
      proxy.armDrop()
      await ok(S, ["report", "progress", "r1", "--job", "A", "--plan", id])
      await until("the sync message carrying r1 to be dropped", () => proxy.dropped() === 1)
      await until("r1 at the peer despite the lost message", async () => (await messages(P, id)).includes("r1"), 30_000)

      // 2. one message lost while more changes follow: the peer asks for what it lacks; the stall
      // detector (or the anti-entropy check, whichever comes first) starts the conversation afresh
      proxy.armDrop()
      await ok(S, ["report", "progress", "r2", "--job", "A", "--plan", id])
      await until("the sync message carrying r2 to be dropped", () => proxy.dropped() === 2)
      for (const m of ["r3", "r4"]) await ok(S, ["report", "progress", m, "--job", "A", "--plan", id])
      await until(
        "r2..r4 at the peer despite the lost message",
        async () => {
          const have = await messages(P, id)
          return ["r2", "r3", "r4"].every(m => have.includes(m))
        },
        30_000
      )
      expect((await messages(P, id)).sort()).toEqual(["r0", "r1", "r2", "r3", "r4"])
      expect(watch.output().stderr).toMatch(/resync/)
      expect(watch.output().stderr).not.toMatch(/\n\s+at |TypeError/)
    } catch (e) {
      console.log("WATCH STDERR", watch.output().stderr, "SERVER", server.logs())
      throw e
    } finally {
      watch.child.kill("SIGTERM")
      await watch.done
      proxy.close()
      await server.stop("SIGTERM")
    }
  }, 120_000)
})

describe("stall detection (pure)", () => {
  it("flags the same need repeated `limit` times in a row, per document and direction, and forgets on reset", () => {
    const d = new SyncStallDetector(3)
    expect(d.see("out", "doc1", ["h1"])).toBeUndefined()
    expect(d.see("out", "doc1", ["h1"])).toBeUndefined()
    expect(d.see("in", "doc1", ["h1"])).toBeUndefined() // other direction: counted apart
    expect(d.see("out", "doc2", ["h1"])).toBeUndefined() // other document: counted apart
    expect(d.see("out", "doc1", ["h1"])).toMatchObject({ documentId: "doc1", direction: "out", repeats: 3 })
    // a need that changes, or an empty need, is progress
    expect(d.see("out", "doc1", ["h1"])).toBeUndefined()
    expect(d.see("out", "doc1", ["h2"])).toBeUndefined()
    expect(d.see("out", "doc1", [])).toBeUndefined()
    expect(d.see("out", "doc1", ["h2"])).toBeUndefined()
    d.reset()
    expect(d.see("out", "doc1", ["h2"])).toBeUndefined()
    expect(d.see("out", "doc1", ["h2"])).toBeUndefined()
    expect(d.see("out", "doc1", ["h2"])).toMatchObject({ repeats: 3 })
  })

  it("anti-entropy: a difference from the server that does not move is stuck; a moving one or none is not", () => {
    const w = new DivergenceWatch(2)
    expect(w.compare({ a: ["x"], b: ["y"] }, { a: ["x"], b: ["z"] })).toEqual([])
    expect(w.compare({ a: ["x"], b: ["y"] }, { a: ["x"], b: ["z"] })).toEqual(["b"])
    // moving: never flagged
    expect(w.compare({ b: ["y1"] }, { b: ["z"] })).toEqual([])
    expect(w.compare({ b: ["y2"] }, { b: ["z"] })).toEqual([])
    // the server lacks the document altogether
    expect(w.compare({ c: null }, { c: ["z"] })).toEqual([])
    expect(w.compare({ c: null }, { c: ["z"] })).toEqual(["c"])
    // same heads in another order: in sync
    expect(w.compare({ d: ["p", "q"] }, { d: ["q", "p"] })).toEqual([])
    expect(w.compare({ d: ["p", "q"] }, { d: ["q", "p"] })).toEqual([])
  })
})
