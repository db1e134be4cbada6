/**
 * `concord serve --tls-cert/--tls-key` serves wss:// (self-signed certificate made with openssl here);
 * clients trust it with --ca or NODE_EXTRA_CA_CERTS, and refuse it otherwise. Plus serve's validation.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import http from "node:http"
import https from "node:https"
import net, { type AddressInfo } from "node:net"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { addTokenCli, createPlanCli, FOUNDING_PLAN, ok, rm, runConcord, startServerProcess, statusJson, tempRoot } from "./helpers.js"

const roots: string[] = []
afterAll(() => roots.forEach(rm))
const hasOpenssl = spawnSync("openssl", ["version"]).status === 0

/** Stores for a server and two clients, and a self-signed certificate for 127.0.0.1 made with openssl. */
function selfSigned(): { s: string; a: string; b: string; cert: string; key: string } {
  const root = tempRoot()
  roots.push(root)
  const [s, a, b] = ["server", "a", "b"].map(n => path.join(root, n))
  const cert = path.join(root, "cert.pem")
  const key = path.join(root, "key.pem")
  const subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", ...subject], { stdio: "ignore" })
  return { s, a, b, cert, key }
}

describe("TLS and serve options", () => {
  it.skipIf(!hasOpenssl)(
    "serves wss:// with a certificate; clients need to trust it",
    async () => {
      const { s, a, b, cert, key } = selfSigned()
      const id = await createPlanCli(a, FOUNDING_PLAN)
      const token = await addTokenCli(s, id, "admin")
      const server = await startServerProcess(s, ["--tls-cert", cert, "--tls-key", key])
      try {
        expect(server.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+$/)
        const untrusted = await runConcord(a, ["sync", server.url, "--token", token])
        expect(untrusted.code).toBe(1)
        expect(untrusted.stderr).toMatch(/cannot reach the server .*(SELF_SIGNED|self.signed|certificate)/i)
        await ok(a, ["sync", server.url, "--token", token, "--ca", cert])
        await ok(b, ["sync", server.url, "--token", token], { NODE_EXTRA_CA_CERTS: cert })
        await ok(b, ["report", "completed", "over TLS", "--job", "B", "--plan", id, "--remote", server.url, "--token", token, "--ca", cert])
        await ok(a, ["sync", server.url, "--token", token, "--ca", cert])
        expect((await statusJson(a, id)).jobs.find((j: any) => j.name === "B").status).toBe("completed")
        // a plain ws:// client gets nowhere
        const plain = await runConcord(a, ["sync", server.url.replace("wss:", "ws:"), "--token", token, "--timeout", "5"])
        expect(plain.code).not.toBe(0)
      } finally {
        await server.stop()
      }
    },
    60_000
  )

  it.skipIf(!hasOpenssl)(
    "behind a TLS-terminating proxy that mounts the server under a path prefix",
    async () => {
      const { s, a, b, cert, key } = selfSigned()
      const id = await createPlanCli(a, FOUNDING_PLAN)
      const token = await addTokenCli(s, id, "admin")
      const server = await startServerProcess(s) // plain ws on loopback, as behind nginx or Caddy
      // the proxy: https on another port, /concord/... -> http://127.0.0.1:PORT/..., WebSocket upgrades included
      const strip = (u: string) => {
        const rest = u.replace(/^\/concord/, "")
        return rest.startsWith("/") ? rest : `/${rest}`
      }
      const proxy = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
        const up = http.request({ host: "127.0.0.1", port: server.port, path: strip(req.url!), method: req.method, headers: req.headers }, r => {
          res.writeHead(r.statusCode!, r.headers)
          r.pipe(res)
        })
        req.pipe(up)
      })
      proxy.on("upgrade", (req, socket, head) => {
        const up = net.connect(server.port, "127.0.0.1", () => {
          const lines = [`${req.method} ${strip(req.url!)} HTTP/1.1`, ...Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`), "", ""]
          up.write(lines.join("\r\n"))
          up.write(head)
          up.pipe(socket)
          socket.pipe(up)
        })
        up.on("error", () => socket.destroy())
        socket.on("error", () => up.destroy())
      })
      await new Promise<void>(r => proxy.listen(0, "127.0.0.1", r))
      const url = `wss://127.0.0.1:${(proxy.address() as AddressInfo).port}/concord`
      try {
        await ok(a, ["sync", url, "--token", token, "--ca", cert])
        await ok(b, ["sync", url, "--token", token, "--ca", cert])
        expect((await statusJson(b, id)).name).toBe("founding-bug")
        const denied = await runConcord(b, ["sync", url, "--token", "wrong", "--ca", cert])
        expect([denied.code, denied.stderr]).toEqual([1, expect.stringMatching(/HTTP 401/)])
      } finally {
        proxy.close()
        proxy.closeAllConnections()
        await server.stop()
      }
    },
    60_000
  )

  it("serve rejects bad options with exit 2 and a busy port with exit 1", async () => {
    const root = tempRoot()
    roots.push(root)
    const s = path.join(root, "server")
    const bad = await runConcord(s, ["serve", "--port", "99999"])
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/invalid --port/)])
    const half = await runConcord(s, ["serve", "--port", "0", "--tls-cert", "x.pem"])
    expect([half.code, half.stderr]).toEqual([2, expect.stringMatching(/--tls-cert and --tls-key go together/)])
    const missing = await runConcord(s, ["serve", "--port", "0", "--tls-cert", "nope.pem", "--tls-key", "nope.key"])
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringMatching(/cannot read certificate .*nope\.pem/)])
    const server = await startServerProcess(s)
    try {
      const busy = await runConcord(s, ["serve", "--port", String(server.port)])
      expect([busy.code, busy.stderr]).toEqual([1, expect.stringMatching(/cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/)])
      expect(server.logs()).toMatch(/no tokens in .*every client is refused/)
      // bad token commands
      const role = await runConcord(s, ["token", "add", "--plan", "*", "--role", "boss"])
      expect([role.code, role.stderr]).toEqual([2, expect.stringMatching(/invalid role "boss"/)])
      const plan = await runConcord(s, ["token", "add", "--plan", "not-an-id", "--role", "reader"])
      expect([plan.code, plan.stderr]).toEqual([2, expect.stringMatching(/invalid plan id/)])
      const noplan = await runConcord(s, ["token", "add", "--role", "reader"])
      expect(noplan.code).toBe(2)
      const listed = await ok(s, ["token", "list", "--json"])
      expect(JSON.parse(listed.stdout)).toEqual([])
      const url = await runConcord(s, ["sync", "ftp://x", "--token", "t"])
      expect([url.code, url.stderr]).toEqual([2, expect.stringMatching(/invalid server URL/)])
      const down = await runConcord(s, ["sync", "ws://127.0.0.1:1", "--token", "t"])
      expect([down.code, down.stderr]).toEqual([1, expect.stringMatching(/cannot reach the server at 127\.0\.0\.1:1: ECONNREFUSED/)])
    } finally {
      const stopped = await server.stop("SIGINT")
      expect(stopped.code).toBe(0)
    }
    expect(server.logs()).toMatch(/SIGINT: shutting down[\s\S]*stopped; everything is written/)
  }, 60_000)
})
