/**
 * concord's own network adapters (server and client) pass automerge-repo's network adapter acceptance
 * tests, over real sockets on 127.0.0.1: the server adapter is peer 0, two client adapters are peers 1
 * and 2. A stock WebSocketClientAdapter also syncs through the concord server adapter (same wire format).
 */
import http from "node:http"
import type { AddressInfo } from "node:net"
import { Repo, type PeerId } from "@automerge/automerge-repo"
import { runNetworkAdapterTests } from "@automerge/automerge-repo/helpers/tests/network-adapter-tests.js"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { describe, expect, it } from "vitest"
import { WebSocketServer } from "ws"
import { ConcordClientAdapter } from "../../../src/sync/net/ClientAdapter.js"
import { ConcordServerAdapter } from "../../../src/sync/net/ServerAdapter.js"

async function startServer() {
  const server = http.createServer()
  const wss = new WebSocketServer({ noServer: true })
  const adapter = new ConcordServerAdapter<string>({ helloTimeoutMs: 2000 })
  server.on("upgrade", (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, ws => adapter.accept(ws, "anyone", req.socket.remoteAddress ?? "?"))
  })
  await new Promise<void>(r => server.listen(0, "127.0.0.1", r))
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { server, wss, adapter, url }
}

runNetworkAdapterTests(async () => {
  const { server, wss, adapter, url } = await startServer()
  const c1 = new ConcordClientAdapter(url, { minRetryMs: 20, maxRetryMs: 100 })
  const c2 = new ConcordClientAdapter(url, { minRetryMs: 20, maxRetryMs: 100 })
  const teardown = () => {
    c1.disconnect()
    c2.disconnect()
    adapter.disconnect()
    for (const ws of wss.clients) ws.terminate()
    wss.close()
    server.close()
    server.closeAllConnections()
  }
  return { adapters: [adapter, c1, c2], teardown }
}, "concord server + client adapters")

describe("wire compatibility", () => {
  it("a stock WebSocketClientAdapter syncs through the concord server adapter", async () => {
    const { server, wss, adapter, url } = await startServer()
    const serverRepo = new Repo({ network: [adapter], peerId: "server" as PeerId })
    const stock = new WebSocketClientAdapter(url)
    const clientRepo = new Repo({ network: [stock], peerId: "stock-client" as PeerId })
    const h = serverRepo.create<{ n: number }>({ n: 1 })
    const found = await clientRepo.find<{ n: number }>(h.url)
    expect(found.doc().n).toBe(1)
    found.change(d => {
      d.n = 2
    })
    await new Promise<void>(resolve => {
      const check = () => (h.doc().n === 2 ? resolve() : setTimeout(check, 20))
      check()
    })
    stock.disconnect()
    adapter.disconnect()
    wss.close()
    server.close()
    server.closeAllConnections()
  })
})
