/**
 * A join whose answer is lost (the network chaos run: a proxy dropped the server's `peer` frame, the
 * server saw the peer join, and the client waited on that connection for good, never syncing again):
 * the client drops a connection whose join is not answered in time and makes it again. Real sockets: a
 * WebSocket server that swallows the first join and answers the second.
 */
import type { PeerId } from "@automerge/automerge-repo/slim"
import type { AddressInfo } from "node:net"
import { afterAll, describe, expect, it } from "vitest"
import { WebSocketServer } from "ws"
import { ConcordClientAdapter } from "../../../src/sync/net/ClientAdapter.js"
import { decodeFrame, encodeFrame } from "../../../src/sync/net/protocol.js"

const servers: WebSocketServer[] = []
afterAll(() => servers.forEach(s => s.close()))

describe("client adapter: a join that is not answered", () => {
  it("drops the connection after joinTimeoutMs, reconnects, and joins on the next one", async () => {
    const joins: number[] = []
    const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" })
    servers.push(wss)
    await new Promise<void>(r => wss.once("listening", () => r()))
    wss.on("connection", ws => {
      ws.on("message", data => {
        const m = decodeFrame(data as Buffer) as { type?: string; senderId?: string }
        if (m.type !== "join") return
        joins.push(Date.now())
        // the first join's answer is "lost"; the connection stays open and silent
        if (joins.length === 1) return
        ws.send(encodeFrame({ type: "peer", senderId: "server-peer", targetId: m.senderId, peerMetadata: {}, selectedProtocolVersion: "1" }))
      })
    })
    const port = (wss.address() as AddressInfo).port
    const adapter = new ConcordClientAdapter(`ws://127.0.0.1:${port}`, { joinTimeoutMs: 300, minRetryMs: 10, maxRetryMs: 20 })
    const reasons: string[] = []
    adapter.events.on("disconnected", why => reasons.push(why))
    const connected = new Promise<PeerId>(r => adapter.events.once("connected", id => r(id)))
    const t0 = Date.now()
    adapter.connect("client-peer" as PeerId, {})
    try {
      expect(await connected).toBe("server-peer")
      expect(joins).toHaveLength(2)
      // the first connection was dropped for its unanswered join, not before the timeout
      expect(reasons).toEqual(["the server did not answer our join within 0.3s"])
      expect(joins[1] - joins[0]).toBeGreaterThanOrEqual(290)
      expect(Date.now() - t0).toBeLessThan(10_000)
      expect(adapter.connected).toBe(true)
      // an answered join is not dropped later
      await new Promise(r => setTimeout(r, 600))
      expect(reasons).toHaveLength(1)
      expect(adapter.connected).toBe(true)
    } finally {
      adapter.disconnect()
    }
  }, 20_000)
})
