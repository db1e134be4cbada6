/**
 * `concord dashboard`: the dashboard for this machine's store, on 127.0.0.1 by default. Anyone who can
 * reach the port could otherwise approve or cancel plans (including a web page in the user's browser
 * posting to localhost), so the URL carries a random secret generated per run, checked like a server
 * token; decisions are recorded as `<user>@<host> via dashboard`.
 */
import http from "node:http"
import type { AddressInfo } from "node:net"
import type { ProcessStopper } from "../ops/cancel.js"
import { LocalBackend } from "../ops/local.js"
import type { PlanStore } from "../sync/store/PlanStore.js"
import { Dashboard, newSecret } from "./http.js"
import { timingSafeEqual } from "node:crypto"

export interface LocalDashboardOptions {
  store: PlanStore
  planRef?: string
  host?: string
  /** 0: any free port. */
  port?: number
  /** The URL secret; default: a fresh random one. */
  secret?: string
  who: string
  stopper?: ProcessStopper
  log?: (line: string) => void
}

export interface LocalDashboard {
  url: string
  port: number
  close(): Promise<void>
}

export async function startLocalDashboard(opts: LocalDashboardOptions): Promise<LocalDashboard> {
  const secret = opts.secret ?? newSecret()
  const backend = new LocalBackend(opts.store)
  const expected = Buffer.from(secret)
  const dash = new Dashboard({
    planRef: opts.planRef,
    stopper: opts.stopper,
    log: opts.log,
    session: async token => {
      const given = Buffer.from(token ?? "")
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null
      return { backend, who: opts.who, role: "local", canAct: true }
    },
  })
  const server = http.createServer((req, res) => {
    dash
      .handle(req, res)
      .then(handled => {
        if (handled) return
        if ((req.url ?? "/").split("?")[0] === "/") {
          res.writeHead(302, { location: "/dashboard/" })
          res.end()
        } else {
          res.writeHead(404, { "content-type": "text/plain" })
          res.end("not found\n")
        }
      })
      .catch(() => res.destroy())
  })
  server.headersTimeout = 10_000
  const host = opts.host ?? "127.0.0.1"
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(opts.port ?? 7800, host, () => {
      server.off("error", reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  const shown = host.includes(":") ? `[${host}]` : host === "0.0.0.0" ? "127.0.0.1" : host
  return {
    url: `http://${shown}:${port}/dashboard/?token=${secret}`,
    port,
    async close() {
      dash.close()
      server.closeAllConnections()
      await new Promise<void>(r => server.close(() => r()))
    },
  }
}
