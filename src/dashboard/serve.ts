/**
 * The dashboard on `concord serve`'s port, behind the server's tokens: a token sees the plans it is
 * granted, and every action is judged by the server's own access policy (TokenBackend), so a reader's
 * or a job token's approve is refused by the server whatever its page does. Decisions are recorded as
 * `<token label or id> via dashboard (token <id>)`.
 */
import type http from "node:http"
import { LocalBackend } from "../ops/local.js"
import type { SyncServer } from "../sync/net/server.js"
import { TokenBackend } from "./guard.js"
import { Dashboard } from "./http.js"

const dashboards = new WeakMap<SyncServer, Dashboard>()

/** The sync server's request handler delegates here first; false: not a dashboard request. */
export function handleDashboardRequest(server: SyncServer, req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
  let d = dashboards.get(server)
  if (!d) {
    const local = new LocalBackend(server.store)
    d = new Dashboard({
      log: l => server.log(l),
      session: async secret => {
        const token = await server.tokens.verify(secret)
        if (!token) return null
        return {
          backend: new TokenBackend(local, token, server.policy, id => server.currentDoc(id)),
          who: `${token.label ? token.label.replace(/[\x00-\x1f\x7f]/g, "") : token.id} via dashboard (token ${token.id})`,
          role: token.role,
          // the page's hint; the server judges every action with its access policy
          canAct: token.role === "admin" || token.role === "writer",
        }
      },
    })
    dashboards.set(server, d)
  }
  return d.handle(req, res)
}
