/**
 * The dashboard on `concord serve`'s port, behind the server's tokens: a token sees the plans it is
 * granted, and every action is judged by the server's own access policy (TokenBackend), so a reader's
 * or a job token's approve is refused by the server whatever its page does. Decisions are recorded as
 * `<token label or id> via dashboard (token <id>)`.
 */
import * as A from "@automerge/automerge"
import type { DocumentId } from "@automerge/automerge-repo"
import type http from "node:http"
import { type DocId, reportDocId as reportId } from "../doc/ids.js"
import type { DocChange } from "../ops/backend.js"
import { LocalBackend } from "../ops/local.js"
import type { SyncServer } from "../sync/net/server.js"
import { TokenBackend } from "./guard.js"
import { Dashboard } from "./http.js"

const dashboards = new WeakMap<SyncServer, Dashboard>()

/** The sync server's request handler delegates here first; false: not a dashboard request. */
export function handleDashboardRequest(server: SyncServer, req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
  let d = dashboards.get(server)
  if (!d) {
    const local = new ServerStoreBackend(server)
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

/**
 * The server's store, watched both on disk (local processes write there) and in the server's Repo (a
 * change that arrives over the network is in a handle before the Repo's throttled save writes it), so
 * the page sees a remote agent's report without waiting for the disk. Whichever source is first, a
 * document is passed on only if it adds something: an older copy from the other source is dropped, and
 * concurrent copies are merged, so the view never steps back.
 */
class ServerStoreBackend extends LocalBackend {
  constructor(readonly server: SyncServer) {
    super(server.store)
  }

  override watch(planId: DocId, jobs: string[], onChange: (change: DocChange) => void): { close(): void } {
    // heads passed on per document (not the documents: Automerge advances a document object in place)
    const latest = new Map<string, string[]>()
    const jobOf = new Map<string, string | null>([[planId, null]])
    const forward = (c: DocChange) => {
      const prev = latest.get(c.docId)
      let doc = c.doc as A.Doc<unknown>
      if (prev) {
        const heads = A.getHeads(doc)
        if (heads.length === prev.length && heads.every(h => prev.includes(h))) return
        if (!A.hasHeads(doc, prev)) {
          // older than what was passed on, or concurrent with it: pass on both merged, or nothing
          const h = this.server.repo?.handles[c.docId as DocumentId]
          if (!h?.isReady()) return
          doc = A.merge(A.clone(h.doc() as A.Doc<unknown>), doc)
          if (!A.hasHeads(doc, prev)) return
        }
      }
      latest.set(c.docId, A.getHeads(doc))
      onChange({ ...c, doc } as DocChange)
    }
    const attached = new Map<string, () => void>()
    const attach = () => {
      for (const id of jobOf.keys()) {
        if (attached.has(id)) continue
        const h = this.server.repo?.handles[id as DocumentId]
        if (!h?.isReady()) continue
        const listener = ({ doc }: { doc: unknown }) => forward({ docId: id as DocId, job: jobOf.get(id) ?? null, doc } as DocChange)
        h.on("heads-changed", listener)
        attached.set(id, () => h.off("heads-changed", listener))
      }
    }
    const disk = super.watch(planId, jobs, c => {
      if (!jobOf.has(c.docId)) jobOf.set(c.docId, c.job)
      forward(c)
      attach()
    })
    for (const j of jobs) jobOf.set(reportId(planId, j), j)
    attach()
    return {
      close() {
        disk.close()
        for (const off of attached.values()) off()
      },
    }
  }
}
