/**
 * `concord serve`: a sync server over a local store.
 *
 * One automerge-repo Repo over ConcordStorageAdapter on the store directory, networked with
 * ConcordServerAdapter (the websocket adapter's wire protocol) behind an HTTP(S) server that checks
 * tokens in its `upgrade` handler, before the WebSocket exists. Local CLI processes keep writing the same
 * directory with DocStore; the server watches the plan and report documents (DocStore.watchChunks) and
 * applies the chunk files they write to its handles, so connected clients get it. Plans that arrive over the network are
 * added to the store's plans index (`plans/<id>.json`) once they are durable.
 *
 * HTTP endpoints on the same port (token in `Authorization: Bearer T` or `?token=T`):
 *   GET  /v1/plans    the plans this token can see, with the documents the server has for each
 *                     (`?fields=sync`: what a sync needs only, read without building the plans' views)
 *   POST /v1/confirm  {"docs": [id, ...]} -> {"heads": {id: [hex heads] | null}}: the server's heads
 *                     for these documents, after writing them durably (clients use it to know that
 *                     the server has their changes). With {"want": {id: [hex heads]}, "waitMs": N}
 *                     it first waits (up to N ms, at most 5 s) until it has those heads: a client
 *                     learns the moment the server has its changes, without polling.
 *   POST /v1/exchange the direct change exchange of one-shot syncs (exchange.ts, bulk.ts): per
 *                     document, the client's changes (judged, limited and audited as a WebSocket
 *                     message carrying them, durable before the answer) in, the changes it lacks out
 *   GET  /healthz     no token; "ok"
 * Paths are matched by suffix, so a proxy may mount the server under a prefix.
 */
import { readBody, readBodyBytes } from "../../lib/http.js"
import * as A from "@automerge/automerge"
import { type DocumentId, type PeerId, Repo } from "@automerge/automerge-repo"
import { randomBytes } from "node:crypto"
import { promises as fsp } from "node:fs"
import http from "node:http"
import https from "node:https"
import type { AddressInfo, Socket } from "node:net"
import os from "node:os"
import { WebSocketServer } from "ws"
import { handleDashboardRequest } from "../../dashboard/serve.js"
import { isDocId, reportDocId } from "../../doc/ids.js"
import { PLAN_KIND } from "../../doc/model.js"
import { isPlanDoc, type PlanDocument, readPlan } from "../../doc/plan.js"
import { sameHeads } from "../../doc/heads.js"
import { ConcordStorageAdapter } from "../storage/ConcordStorageAdapter.js"
import { DocStore, type DocStoreWatch, headsHash, holdsChunk, keyHash, type WatchedChunk } from "../store/DocStore.js"
import { PlanStore } from "../store/PlanStore.js"
import { AccessPolicy, type Backend, grantsPlan, type Judgement, PlanIndex, type Principal } from "./access.js"
import { encodeFramed, type ExchangeAnswerDoc, jobsOf, parseRequest } from "./exchange.js"
import { AuditLog, type AuditRecord, readAudit } from "./audit.js"
import { LimitBook, type TokenLimits } from "./limits.js"
import { installPromptSync } from "./prompt.js"
import { ConcordServerAdapter } from "./ServerAdapter.js"
import { defaultTokensFile, TokenBook, type TokenRecord } from "./tokens.js"

export interface SyncServerOptions {
  storeDir: string
  host?: string
  /** 0: any free port. Default 7700. */
  port?: number
  tokensFile?: string
  tls?: { cert: string | Buffer; key: string | Buffer }
  /** Largest WebSocket frame accepted (bytes). Default 64 MiB. */
  maxMessageBytes?: number
  /** Close connections that do not join within this long. Default 10 s. */
  helloTimeoutMs?: number
  keepAliveMs?: number
  /** How often the plans index is re-read for plans created locally. Default 1000 ms. */
  indexPollMs?: number
  /** Poll interval of the local-change watcher (besides fs.watch). Default 500 ms. */
  watchPollMs?: number
  log?: (line: string) => void
  /** Per-token limits (limits.ts DEFAULT_LIMITS for what is not given). */
  limits?: Partial<TokenLimits>
  /**
   * Serve POST /v1/exchange, the direct change exchange of one-shot syncs (default true). false: as a
   * server from before it, which answers 404 there (clients then sync through the Repo).
   */
  exchange?: boolean
}

export interface ServerPlanInfo {
  id: string
  name: string
  role: string
  createdAt: number
  createdBy: string
  /** absent in the answer to `?fields=sync` (what a sync needs: read without building the plan's view) */
  status?: string
  checkpoint?: string | null
  jobs: string[]
  /** documents of this plan the server has: the plan and the report logs that exist */
  docs: string[]
}

const MAX_BODY = 256 * 1024
const MAX_CONFIRM_WAIT_MS = 5000
/** Chunk files an exchange-written document may gather before one snapshot replaces them. */
const MAX_EXCHANGE_CHUNKS = 16
/** Documents the server keeps a copy of without its view (#raws). */
const MAX_RAWS = 64
/** Documents whose heads the server remembers with their chunk files (#noteHeads). */
const MAX_HEADS_BY_FILES = 100_000
const HEX_HEAD = /^[0-9a-f]{64}$/
const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v)

export class SyncServer {
  readonly opts: SyncServerOptions
  readonly store: PlanStore
  readonly tokens: TokenBook
  readonly index = new PlanIndex()
  readonly policy = new AccessPolicy(this.index)
  repo!: Repo
  adapter!: ConcordServerAdapter<Principal>
  url = ""
  port = 0
  readonly #reader: DocStore
  readonly audit: AuditLog
  readonly limits: LimitBook
  #http?: http.Server | https.Server
  #wss?: WebSocketServer
  #watcher?: DocStoreWatch
  #watched = new Set<string>()
  /** documents read without their view for exchanges, with the chunk files each holds (#currentRaw) */
  readonly #raws = new Map<string, { raw: Backend; keys: Set<string> }>()
  /** heads of documents with the chunk files that hold them (#noteHeads), least recently noted first */
  readonly #headsByFiles = new Map<string, { files: string; heads: string[] }>()
  /** report logs found on disk once, by plan (#hasLog) */
  readonly #existingLogs = new Map<string, Set<string>>()
  /** the exchange being handled (they are handled one after another) */
  #exchanges: Promise<void> = Promise.resolve()
  #indexTimer?: NodeJS.Timeout
  #pendingTimer?: NodeJS.Timeout
  #revokeTimer?: NodeJS.Timeout
  /** documents that arrived over the network and may be new plans: id -> first seen */
  #pending = new Map<string, number>()
  #registering = new Set<string>()
  #closing = false
  #closed?: Promise<void>
  readonly #log: (line: string) => void

  constructor(opts: SyncServerOptions) {
    this.opts = opts
    this.#log = opts.log ?? (() => {})
    const warn = (m: string) => this.#log(`warning: ${m}`)
    this.store = new PlanStore(opts.storeDir, { onWarning: warn })
    this.#reader = new DocStore(opts.storeDir, { onWarning: warn })
    this.tokens = new TokenBook(opts.tokensFile ?? defaultTokensFile(this.store.dir), warn)
    this.audit = new AuditLog(this.store.dir)
    this.limits = new LimitBook(opts.limits)
  }

  log(line: string): void {
    this.#log(line)
  }

  async start(): Promise<{ url: string; port: number }> {
    await this.tokens.load()
    // documents each token created survive restarts: count them from the audit trail
    for (const r of await readAudit(this.store.dir)) if (r.created) this.limits.noteCreated(r.token, r.doc)
    const storage = new ConcordStorageAdapter(this.store.dir, {
      onWarning: m => this.#log(`warning: ${m}`),
      // a local writer's chunk, applied to the Repo's copy, is saved by the Repo as the same bytes: not again
      skipIdentical: true,
      // what the Repo writes, it holds: its store watcher (local changes of other processes) does not
      // read it back
      onSave: key => {
        const docId = key[0] as DocumentId
        this.#watcher?.adopt(docId, key, () => {
          const h = this.repo.handles[docId]
          return h?.isReady() ? (h.doc() as A.Doc<unknown>) : undefined
        })
      },
    })
    this.adapter = new ConcordServerAdapter<Principal>({
      helloTimeoutMs: this.opts.helloTimeoutMs,
      keepAliveMs: this.opts.keepAliveMs,
      hooks: {
        log: l => this.#log(l),
        samePrincipal: (a, b) => a.token.id === b.token.id,
        outbound: (peer, msg) =>
          msg.type === "doc-unavailable" || !("documentId" in msg) || this.policy.canRead(peer.principal.token, msg.documentId as string),
        inbound: (peer, msg) => this.#inbound(peer.principal.token, peer.remote, msg as never),
      },
    })
    this.repo = new Repo({
      storage,
      network: [this.adapter],
      peerId: `concord-server-${os.hostname().split(".")[0]}-${process.pid}-${randomBytes(3).toString("hex")}` as PeerId,
      shareConfig: {
        // never push documents nobody asked for; serve what a peer may read
        announce: async () => false,
        access: async (peerId, docId) => {
          const peer = this.adapter.peers.find(p => p.peerId === peerId)
          return !!peer && this.policy.canRead(peer.principal.token, docId)
        },
      },
    })
    // forward a writer's changes to the watchers at once, not up to 100 ms later (prompt.ts)
    const prompt = installPromptSync(this.repo)
    if (!prompt.installed) this.#log(`note: changes are forwarded to peers at most every 100 ms (${prompt.reason})`)
    // A client that joins before the Repo connected its adapter is ignored: listen only after this.
    await this.repo.storageId()

    for (const p of await this.store.listPlans()) await this.#indexPlan(p.id)
    this.#watcher = this.store.docs.watchChunks([], (id, chunks) => this.#onLocalChunks(id, chunks), { pollMs: this.opts.watchPollMs ?? 500 })
    for (const id of this.index.plans.keys()) this.#watchPlan(id)
    this.#indexTimer = setInterval(() => void this.#pollIndex(), this.opts.indexPollMs ?? 1000)
    this.#pendingTimer = setInterval(() => void this.#checkPending(), 200)
    this.#revokeTimer = setInterval(() => void this.#dropRevoked(), 1000)

    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.#onRequest(req, res).catch(e => {
        this.#log(`http ${req.method} ${req.url?.split("?")[0]}: ${(e as Error).message}`)
        if (!res.headersSent) json(res, 500, { error: "internal error" })
        else res.destroy()
      })
    }
    this.#http = this.opts.tls ? https.createServer({ cert: this.opts.tls.cert, key: this.opts.tls.key }, handler) : http.createServer(handler)
    this.#http.headersTimeout = 10_000
    this.#http.requestTimeout = 30_000
    this.#http.on("clientError", (_err, socket) => {
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
      else socket.destroy()
    })
    this.#http.on("tlsClientError", err => this.#log(`TLS handshake failed: ${err.message}`))
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: this.opts.maxMessageBytes ?? 64 * 1024 * 1024 })
    this.#http.on("upgrade", (req, socket, head) => this.#onUpgrade(req, socket as Socket, head))
    const host = this.opts.host ?? "127.0.0.1"
    await new Promise<void>((resolve, reject) => {
      this.#http!.once("error", reject)
      this.#http!.listen(this.opts.port ?? 7700, host, () => {
        this.#http!.off("error", reject)
        resolve()
      })
    })
    this.#http.on("error", e => this.#log(`server error: ${(e as Error).message}`))
    this.port = (this.#http.address() as AddressInfo).port
    const shownHost = host.includes(":") ? `[${host}]` : host
    this.url = `${this.opts.tls ? "wss" : "ws"}://${shownHost}:${this.port}`
    return { url: this.url, port: this.port }
  }

  /** Stop accepting, disconnect everyone, write everything, release files. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing = true
      clearInterval(this.#indexTimer)
      clearInterval(this.#pendingTimer)
      clearInterval(this.#revokeTimer)
      this.#http?.close()
      this.adapter?.disconnect()
      for (const ws of this.#wss?.clients ?? []) ws.terminate()
      this.#wss?.close()
      this.#watcher?.close()
      if (this.repo) {
        const ready = Object.values(this.repo.handles)
          .filter(h => h.isReady())
          .map(h => h.documentId)
        try {
          await this.repo.flush(ready)
        } catch (e) {
          this.#log(`flush on shutdown failed: ${(e as Error).message}`)
        }
        await this.#registerArrivedPlans(ready)
      }
      await this.audit.close().catch(() => {})
      ;(this.#http as http.Server | undefined)?.closeAllConnections?.()
    })()
    return this.#closed
  }

  /**
   * Judge one message of a joined client: per-token limits, then access control on what its changes do;
   * the accepted changes go to the audit trail (durably) before the Repo sees the message.
   */
  async #inbound(
    token: TokenRecord,
    remote: string,
    msg: { type: string; documentId?: string; data?: Uint8Array }
  ): Promise<Judgement | { ok: false; reason: string }> {
    const now = Date.now()
    const limited = this.limits.admit(token.id, msg.data?.byteLength ?? 0, now)
    if (limited) return { ok: false, reason: limited }
    const j = await this.policy.judge(token, msg, id => this.currentDoc(id))
    return this.#record(token, remote, msg.documentId!, j, now)
  }

  /**
   * After the judgement of changes a token sent for a document (over the WebSocket or the exchange):
   * the document limit, then the audit trail (durably), then the policy remembers the result.
   */
  async #record(token: TokenRecord, remote: string, docId: string, j: Judgement, now: number): Promise<Judgement | { ok: false; reason: string }> {
    if (!j.ok) return j
    if (j.changes.length === 0) {
      this.policy.noteAccepted(docId, j)
      return { ok: true, changes: [], created: false }
    }
    if (j.created) {
      const over = this.limits.canCreate(token.id, docId)
      if (over) return { ok: false, reason: over }
    }
    const records = auditRecords(token, remote, docId, j, now)
    try {
      await this.audit.append(records)
    } catch (e) {
      return { ok: false, reason: `the server cannot write its audit trail (${(e as Error).message}); nothing was stored` }
    }
    if (j.created) this.limits.noteCreated(token.id, docId)
    this.policy.noteAccepted(docId, j)
    this.#noteDoc(docId)
    return { ok: true, changes: j.changes, created: j.created }
  }

  /**
   * The server's current copy of a document without its JavaScript view (exchanges only pass changes
   * on): the Repo's if loaded, else what is on disk, kept between exchanges (only chunk files new since
   * are read). Read only: callers fork it to change it.
   */
  async #currentRaw(docId: string): Promise<Backend | undefined> {
    return (await this.#currentRawEntry(docId))?.raw
  }

  /** #currentRaw with the chunk files it holds (none for the Repo's copy). */
  async #currentRawEntry(docId: string): Promise<{ raw: Backend; keys?: Set<string> } | undefined> {
    const h = this.repo.handles[docId as DocumentId]
    if (h?.isReady()) return { raw: A.getBackend(h.doc() as A.Doc<unknown>) }
    if (!isDocId(docId)) return undefined
    const known = this.#raws.get(docId)
    this.#raws.delete(docId)
    const got = await this.#reader.loadBackend(docId, known)
    if (!got) return undefined
    this.#keepRaw(docId, got)
    return got
  }

  #keepRaw(docId: string, entry: { raw: Backend; keys: Set<string> }): void {
    this.#raws.delete(docId)
    this.#raws.set(docId, entry)
    if (this.#raws.size > MAX_RAWS) {
      // the least recently used report log goes first: plans are read at every sync's plans call
      let out: string | undefined
      for (const id of this.#raws.keys()) {
        if (!this.index.has(id)) {
          out = id
          break
        }
      }
      this.#raws.delete(out ?? this.#raws.keys().next().value!)
    }
    this.#noteHeads(docId, entry.raw.getHeads(), entry.keys)
  }

  /**
   * Remember a document's heads with the chunk files that hold exactly them (`files`: every chunk file
   * on disk that a copy with these heads was read from or written as). Chunk files are named by their
   * content (incrementals) or heads (snapshots), so while a listing of the document finds exactly these
   * files, its heads are these (#currentHeads) without reading anything: kept for many more documents
   * than copies are (#raws), as it is a few hashes per document.
   */
  #noteHeads(docId: string, heads: string[], files: Iterable<string>): void {
    this.#headsByFiles.delete(docId)
    this.#headsByFiles.set(docId, { files: [...files].sort().join(" "), heads })
    if (this.#headsByFiles.size > MAX_HEADS_BY_FILES) this.#headsByFiles.delete(this.#headsByFiles.keys().next().value!)
  }

  /**
   * The server's current heads of a document: the Repo's copy's if loaded; else, when the document's
   * chunk files are those it last read or wrote (#noteHeads), their heads, from a listing alone; else
   * those of #currentRaw (reading the files that are new). Undefined if the server has no such document.
   */
  async #currentHeads(docId: string): Promise<string[] | undefined> {
    const h = this.repo.handles[docId as DocumentId]
    if (h?.isReady()) return A.getHeads(h.doc() as A.Doc<unknown>)
    if (!isDocId(docId)) return undefined
    const noted = this.#headsByFiles.get(docId)
    if (noted) {
      const files = (await this.#reader.chunkFiles(docId)).join(" ")
      if (files === noted.files && files !== "") return noted.heads
    }
    return (await this.#currentRaw(docId))?.getHeads()
  }

  /**
   * Does the server have this report log of a plan (the Repo's copy, or chunk files on disk)? Once it
   * had it, it does from then on without a look at the disk, as long as the plan is in the plans index
   * (a report log goes only with its plan: `plan remove`, whose plan the next plans call no longer
   * lists, #forgetLogs): a plans call of a 500-job plan would otherwise list 1,000 directories every time.
   */
  async #hasLog(planId: string, docId: string): Promise<boolean> {
    if (this.#existingLogs.get(planId)?.has(docId) || this.repo.handles[docId as DocumentId]?.isReady()) return true
    if (!(await this.store.docs.exists(docId))) return false
    let known = this.#existingLogs.get(planId)
    if (!known) this.#existingLogs.set(planId, (known = new Set()))
    known.add(docId)
    return true
  }

  /** Plans no longer in the plans index: their report logs are looked for on disk again, should they come back. */
  #forgetLogs(listed: { id: string }[]): void {
    if (this.#existingLogs.size === 0) return
    const ids = new Set(listed.map(e => e.id))
    for (const id of this.#existingLogs.keys()) if (!ids.has(id)) this.#existingLogs.delete(id)
  }

  /** The server's current copy of a document: the Repo's if loaded, else what is on disk. */
  async currentDoc(docId: string): Promise<A.Doc<unknown> | undefined> {
    const h = this.repo.handles[docId as DocumentId]
    if (h?.isReady()) return h.doc() as A.Doc<unknown>
    if (!isDocId(docId)) return undefined
    return this.#reader.load<unknown>(docId)
  }

  // ------------------------------------------------------------------ upgrade / auth

  #remote(req: http.IncomingMessage): string {
    return `${req.socket.remoteAddress ?? "?"}:${req.socket.remotePort ?? "?"}`
  }

  async #auth(req: http.IncomingMessage): Promise<{ token?: TokenRecord; given: boolean }> {
    let secret: string | undefined
    const h = req.headers.authorization
    if (typeof h === "string" && /^Bearer\s+/i.test(h)) secret = h.replace(/^Bearer\s+/i, "").trim()
    if (!secret) {
      try {
        secret = new URL(req.url ?? "/", "http://x").searchParams.get("token") ?? undefined
      } catch {
        secret = undefined
      }
    }
    return { token: await this.tokens.verify(secret), given: !!secret }
  }

  #onUpgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on("error", () => {})
    const remote = this.#remote(req)
    const reject = (status: number, text: string) => {
      const body = `${text}\n`
      try {
        socket.end(
          `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ""}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
        )
      } catch {
        socket.destroy()
      }
      setTimeout(() => socket.destroy(), 1000).unref()
    }
    if (this.#closing) return reject(503, "server is shutting down")
    this.#auth(req)
      .then(({ token, given }) => {
        if (!token) {
          this.#log(`refused connection from ${remote}: ${given ? "wrong" : "missing"} token (HTTP 401)`)
          return reject(401, given ? "invalid token" : "missing token: connect with ?token=SECRET")
        }
        if (this.#closing) return reject(503, "server is shutting down")
        this.#wss!.handleUpgrade(req, socket, head, ws => {
          this.#log(`connection from ${remote}: token ${token.id} (${token.role}, plans ${token.plans.join(",")})`)
          this.adapter.accept(ws, { token }, remote)
        })
      })
      .catch(e => {
        this.#log(`upgrade from ${remote} failed: ${(e as Error).message}`)
        reject(500, "internal error")
      })
  }

  // ------------------------------------------------------------------ HTTP API

  async #onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let pathname: string
    try {
      pathname = new URL(req.url ?? "/", "http://x").pathname.replace(/\/+$/, "")
    } catch {
      return json(res, 400, { error: "bad url" })
    }
    if (pathname.endsWith("/healthz") || pathname === "/healthz") return json(res, 200, { ok: true })
    if (await handleDashboardRequest(this, req, res)) return
    const isPlans = pathname.endsWith("/v1/plans")
    const isConfirm = pathname.endsWith("/v1/confirm")
    const isExchange = pathname.endsWith("/v1/exchange") && this.opts.exchange !== false
    if (!isPlans && !isConfirm && !isExchange) return json(res, 404, { error: "not found" })
    const { token, given } = await this.#auth(req)
    if (!token) {
      this.#log(`refused ${req.method} ${pathname} from ${this.#remote(req)}: ${given ? "wrong" : "missing"} token (HTTP 401)`)
      return json(res, 401, { error: given ? "invalid token" : "missing token" })
    }
    if (this.#closing) return json(res, 503, { error: "server is shutting down" })
    if (isPlans) {
      if (req.method !== "GET") return json(res, 405, { error: "use GET" })
      return json(res, 200, {
        server: { peerId: this.repo.peerId, storageId: await this.repo.storageId() },
        token: { id: token.id, role: token.role, plans: token.plans },
        plans: new URL(req.url ?? "/", "http://x").searchParams.get("fields") === "sync" ? await this.syncPlansFor(token) : await this.plansFor(token),
      })
    }
    if (req.method !== "POST") return json(res, 405, { error: "use POST" })
    if (isExchange) return this.#exchange(token, this.#remote(req), req, res)
    let body: unknown
    try {
      body = JSON.parse(await readBody(req, MAX_BODY))
    } catch (e) {
      return json(res, 400, { error: `bad request body: ${(e as Error).message}` })
    }
    const docs = (body as { docs?: unknown })?.docs
    if (!Array.isArray(docs) || docs.length > 10_000 || docs.some(d => typeof d !== "string" || !isDocId(d))) {
      return json(res, 400, { error: 'expected {"docs": [document ids]}' })
    }
    const denied = (docs as string[]).filter(d => !this.policy.canRead(token, d))
    if (denied.length) return json(res, 403, { error: `no access to ${denied.join(", ")}` })
    const want = (body as { want?: unknown }).want
    const waitMs = (body as { waitMs?: unknown }).waitMs
    if (want !== undefined) {
      const ok =
        isObject(want) &&
        Object.entries(want).every(
          ([d, h]) => docs.includes(d) && Array.isArray(h) && h.length <= 1000 && h.every(x => typeof x === "string" && HEX_HEAD.test(x))
        ) &&
        (waitMs === undefined || (typeof waitMs === "number" && waitMs >= 0 && waitMs <= MAX_CONFIRM_WAIT_MS))
      if (!ok) return json(res, 400, { error: `"want" must map requested document ids to hex heads, "waitMs" be 0..${MAX_CONFIRM_WAIT_MS}` })
      await this.#waitForHeads(want as Record<string, string[]>, (waitMs as number | undefined) ?? 0)
    }
    const heads: Record<string, string[] | null> = {}
    const ready = (docs as string[]).filter(d => this.repo.handles[d as DocumentId]?.isReady())
    if (ready.length) await this.repo.flush(ready as DocumentId[])
    for (const d of docs as string[]) {
      // (heads only: from a listing of the document's chunk files when they are those last seen)
      heads[d] = (await this.#currentHeads(d)) ?? null
    }
    await this.#registerArrivedPlans(ready)
    return json(res, 200, { heads })
  }

  /**
   * POST /v1/exchange (exchange.ts): per document, apply the changes the client sent (judged, limited
   * and audited exactly as a WebSocket message carrying them), then answer with the changes it lacks.
   * Documents go in the request's order (a new plan before its report logs, which the server learns
   * from the plan). Answered only once what was applied is durable.
   */
  async #exchange(token: TokenRecord, remote: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const max = this.opts.maxMessageBytes ?? 64 * 1024 * 1024
    let body: Buffer
    try {
      body = await readBinaryBody(req, max)
    } catch (e) {
      this.#log(`refused exchange from ${remote} (token ${token.id}): ${(e as Error).message}`)
      return json(res, 413, { error: `${(e as Error).message}: the server takes at most ${max} bytes per exchange` })
    }
    let request: ReturnType<typeof parseRequest>
    try {
      request = parseRequest(body, isDocId)
    } catch (e) {
      return json(res, 400, { error: `bad exchange: ${(e as Error).message}` })
    }
    this.#log(`exchange from ${remote}: token ${token.id} (${token.role}), ${request.docs.length} document(s), ${body.byteLength} bytes`)
    // one exchange at a time: two at once (a client killed midway and its next run, say) would each find
    // the same changes new, judging them against the same copy, and audit them twice
    const previous = this.#exchanges
    let done!: () => void
    this.#exchanges = new Promise<void>(r => (done = r))
    await previous
    try {
      const answers: ExchangeAnswerDoc[] = []
      const chunks: Uint8Array[] = []
      const viaRepo: string[] = []
      const merged: (Backend | undefined)[] = []
      // Accepted changes that change nothing the judgement of the documents after them reads (the plans
      // index) wait here, judged and remembered as accepted, so that the exchange writes its audit
      // records once (one fsync), then puts them all in place: each still only after its records are durable.
      const pending: {
        i: number
        id: string
        chunk: Uint8Array
        j: Judgement & { ok: true }
        now: number
        base?: { raw: Backend; keys?: Set<string> }
        /** a report log new here, counted against the token's documents while it waits */
        counted: boolean
      }[] = []
      const refuse = (i: number, reason: string) => {
        answers[i].refused = reason
        this.#log(`refused sync from ${remote} (token ${token.id}) for ${answers[i].id}: ${reason}`)
      }
      const flush = async () => {
        const batch = pending.splice(0)
        if (batch.length === 0) return
        try {
          await this.audit.append(batch.flatMap(p => auditRecords(token, remote, p.id, p.j, p.now)))
        } catch (e) {
          for (const p of batch) {
            this.policy.forget(p.id)
            if (p.counted) this.limits.forgetCreated(token.id, p.id)
            refuse(p.i, `the server cannot write its audit trail (${(e as Error).message}); nothing was stored`)
          }
          return
        }
        for (const p of batch) this.#noteDoc(p.id)
        // (all of them settled before a failure is thrown: none is still being written when the answer goes)
        const applied = await Promise.allSettled(batch.map(async p => (merged[p.i] = await this.#applyExchanged(p.id, p.chunk, p.j, viaRepo, p.base))))
        const failed = applied.find(r => r.status === "rejected")
        if (failed) throw failed.reason
      }
      for (let i = 0; i < request.docs.length && !this.#closing; i++) {
        const { id } = request.docs[i]
        const chunk = request.chunks[i]
        const answer: ExchangeAnswerDoc = { id, heads: null, bytes: 0 }
        answers.push(answer)
        // each document counts as one message against the token's limits, as on the WebSocket
        const now = Date.now()
        const limited = this.limits.admit(token.id, chunk.byteLength, now)
        if (!this.policy.canRead(token, id)) {
          refuse(i, `token ${token.id} has no access to this document`)
        } else if (limited && chunk.byteLength === 0) {
          refuse(i, limited)
        } else if (chunk.byteLength > 0) {
          let before: string[] = []
          const current = async (d: string) => {
            const doc = await this.currentDoc(d)
            if (d === id && doc) before = A.getMissingDeps(doc, [])
            return doc
          }
          let base: { raw: Backend; keys?: Set<string> } | undefined
          const currentRaw = async (d: string) => {
            const e = await this.#currentRawEntry(d)
            if (d === id && e) {
              before = e.raw.getMissingDeps([])
              base = e
            }
            return e?.raw
          }
          const j: Judgement = limited ? { ok: false, reason: limited } : await this.policy.judgeEntries(token, id, [chunk], current, currentRaw)
          const missing = j.ok ? newMissingDeps(j, before) : /^changes depend on /.test(j.reason)
          if (missing) {
            // built on changes the server does not have (the client's record of what it has is wrong)
            answer.missingDeps = true
          } else if (j.ok && j.changes.length === 0) {
            this.policy.noteAccepted(id, j) // nothing new (#record's own answer)
          } else if (j.ok && !this.#changesIndex(id, j)) {
            // (a report log new here counts against the token's documents as #record counts it)
            const over = j.created ? this.limits.canCreate(token.id, id) : undefined
            if (over) refuse(i, over)
            else {
              const counted = j.created && this.limits.noteCreated(token.id, id)
              this.policy.noteAccepted(id, j)
              pending.push({ i, id, chunk, j, now, base, counted })
            }
          } else {
            // refused, or a document the index learns from (a new one, a plan with new
            // jobs): in place before the next document is judged
            await flush()
            const v = await this.#record(token, remote, id, j, now)
            if (!v.ok) refuse(i, v.reason)
            else if (v.changes.length > 0 && j.ok) merged[i] = await this.#applyExchanged(id, chunk, j, viaRepo, base)
          }
        }
      }
      await flush()
      // shutting down midway: what was applied is durable (or flushed on close); the client sends again
      if (answers.length < request.docs.length) return json(res, 503, { error: "server is shutting down" })
      // durable before the answer: what went through the Repo is flushed; direct writes already are
      if (viaRepo.length) await this.repo.flush(viaRepo as DocumentId[])
      for (let i = 0; i < answers.length; i++) {
        const answer = answers[i]
        let chunk: Uint8Array = new Uint8Array(0)
        if (!answer.refused) {
          const id = answer.id
          const h = this.repo.handles[id as DocumentId]
          // a document the client has as the server has it (most of them, in most syncs): known from a
          // listing of its chunk files, nothing read
          if (!merged[i] && !h?.isReady() && request.docs[i].heads.length > 0) {
            const heads = await this.#currentHeads(id)
            if (heads && sameHeads(heads, request.docs[i].heads)) {
              answer.heads = heads
              chunks.push(chunk)
              continue
            }
          }
          const raw = h?.isReady() ? A.getBackend(h.doc() as A.Doc<unknown>) : (merged[i] ?? (await this.#currentRaw(id)))
          if (raw) {
            const theirs = request.docs[i].heads.filter(x => raw.getChangeByHash(x) !== null)
            answer.heads = raw.getHeads()
            if (!sameHeads(answer.heads, request.docs[i].heads)) chunk = theirs.length ? raw.saveSince(theirs) : raw.save()
          }
        }
        chunks.push(chunk)
      }
      const out = encodeFramed(answers, chunks)
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": out.byteLength, "cache-control": "no-store" })
      res.end(out)
    } finally {
      done()
    }
  }

  /**
   * Would putting these accepted changes in place change the plans index: a document it does not know
   * (a new plan), a plan that gets jobs? (A report log of a known job, new here or not, does not.)
   */
  #changesIndex(id: string, j: Judgement & { ok: true }): boolean {
    const p = this.index.plans.get(id)
    if (!p) return !this.index.lookup(id) || (j.created && !!this.repo.handles[id as DocumentId])
    const after = j.raw ?? (j.doc ? A.getBackend(j.doc) : undefined)
    return !after || jobsOf(after).some(job => !p.jobs.includes(job))
  }

  /**
   * Put changes the server accepted in place: into the Repo's copy when it has the document loaded (its
   * WebSocket peers get them; flushed by the caller), else straight into the store as one more chunk
   * (the Repo reads it when a peer asks). Returns the server's document with them, without a view.
   */
  async #applyExchanged(
    id: string,
    chunk: Uint8Array,
    j: Judgement & { ok: true },
    viaRepo: string[],
    base: { raw: Backend; keys?: Set<string> } | undefined
  ): Promise<Backend | undefined> {
    const h = this.repo.handles[id as DocumentId]
    if (h) {
      if (!h.isReady() && (h.state === "loading" || h.state === "idle")) await h.whenReady().catch(() => {})
      if (h.isReady()) h.update(d => A.loadIncremental(d, chunk))
      else {
        // asked for by a peer before the server had it: give it the whole judged document
        const whole = j.raw ? A.load<unknown>(j.raw.save()) : j.doc
        if (whole) h.update(d => A.merge(d, A.clone(whole)))
      }
      viaRepo.push(id)
      if (j.created) {
        // a new plan: in the index before the report logs that follow it in this exchange are judged
        await this.repo.flush([id as DocumentId])
        await this.#registerArrivedPlans([id])
      }
      return undefined
    }
    // a copy of exactly what was judged: the policy may change its own later
    const own = j.raw ? j.raw.fork() : j.doc ? A.getBackend(A.clone(j.doc)) : undefined
    // announced before it is written: the watcher, woken by the write, must not read it back
    const key = `incremental/${keyHash(chunk)}`
    const whole = own && (() => A.load<unknown>(own.save()))
    if (whole) this.#watcher?.adopt(id, [id, "incremental", keyHash(chunk)], whole)
    // the cached copy the judgement started from, if no other exchange replaced it meanwhile: then its
    // chunk files and this one are exactly what `own` holds
    const cached = this.#raws.get(id)
    const same = !!cached && cached === base
    // a document new here: the judgement started from nothing, so this chunk file is all `own` holds (a
    // file someone else adds meanwhile is not in the cache's keys, and is read the next time)
    const fresh = !cached && !base && j.created
    this.#raws.delete(id)
    await this.store.docs.addChunk(id, chunk)
    if (own && whole && (same || fresh) && this.#raws.get(id) === undefined) {
      let keys = new Set([...(cached?.keys ?? []), key])
      // chunk files pile up one per exchange: now and then one snapshot replaces those the cache holds
      if ([...keys].filter(k => k.startsWith("incremental/")).length > MAX_EXCHANGE_CHUNKS) {
        this.#watcher?.adopt(id, [id, "snapshot", headsHash(own.getHeads())], whole)
        const snap = await this.store.docs.compactBackend(id, own, keys).catch(e => {
          this.#log(`warning: compacting ${id}: ${(e as Error).message}`)
          return undefined
        })
        if (snap) keys = new Set([snap])
      }
      this.#keepRaw(id, { raw: own.fork(), keys })
    }
    if (!this.index.has(id) && !this.index.lookup(id) && own) await this.#registerWritten(id, own)
    else if (own && this.index.has(id)) {
      // a plan that got jobs: their report logs are its (access control), and watched
      const p = this.index.plans.get(id)!
      const jobs = jobsOf(own)
      if (jobs.some(j => !p.jobs.includes(j))) {
        this.index.setPlan(id, p.name, [...new Set([...p.jobs, ...jobs])])
        if (!this.#closing) this.#watchPlan(id)
      }
    }
    return own
  }

  /** A plan that arrived through an exchange and was written to the store: in the plans index, watched. */
  async #registerWritten(id: string, raw: Backend): Promise<void> {
    const doc = A.load<unknown>(raw.save())
    if (isPlanDoc(doc)) await this.#indexArrived(id, doc)
  }

  /** A plan that arrived over the network and is durable here: in the store's and the server's plans index, watched. */
  async #indexArrived(id: string, doc: PlanDocument): Promise<void> {
    const v = readPlan(doc)
    await this.store.registerPlan({ id, name: v.name, createdAt: v.createdAt, createdBy: v.createdBy })
    this.index.setPlan(
      id,
      v.name,
      v.jobs.map(j => j.name)
    )
    if (!this.#closing) this.#watchPlan(id)
    this.#log(`plan ${id} (${v.name}) arrived over the network; added to the plans index`)
  }

  /** Wait until the Repo's copy of each document has the given heads, up to `ms` (or the server closing). */
  async #waitForHeads(want: Record<string, string[]>, ms: number): Promise<void> {
    const until = Date.now() + ms
    const has = () =>
      Object.entries(want).every(([d, heads]) => {
        const h = this.repo.handles[d as DocumentId]
        return h?.isReady() && A.hasHeads(h.doc() as A.Doc<unknown>, heads)
      })
    while (!this.#closing && Date.now() < until && !has()) await new Promise(r => setTimeout(r, 10))
  }

  /** The plans a token can see, with the documents the server has for each. */
  async plansFor(token: TokenRecord): Promise<ServerPlanInfo[]> {
    const entries = await this.store.listPlans()
    this.#forgetLogs(entries)
    const out: ServerPlanInfo[] = []
    for (const e of entries) {
      if (!grantsPlan(token, e.id)) continue
      const doc = await this.currentDoc(e.id)
      if (!isPlanDoc(doc)) continue
      const v = readPlan(doc)
      const docs = [e.id]
      for (const j of v.jobs) {
        const rid = reportDocId(e.id, j.name)
        if (await this.#hasLog(e.id, rid)) docs.push(rid)
      }
      out.push({
        id: e.id,
        name: v.name,
        role: token.role,
        createdAt: e.createdAt,
        createdBy: e.createdBy,
        status: v.status,
        checkpoint: v.checkpoint,
        jobs: v.jobs.map(j => j.name),
        docs,
      })
    }
    return out
  }

  /**
   * The plans a token can see with what a sync needs (ids, names, jobs, the documents the server has),
   * read without building the plans' JavaScript views (#currentRaw): no status or checkpoint.
   */
  async syncPlansFor(token: TokenRecord): Promise<ServerPlanInfo[]> {
    const out: ServerPlanInfo[] = []
    const entries = await this.store.listPlans()
    this.#forgetLogs(entries)
    for (const e of entries) {
      if (!grantsPlan(token, e.id)) continue
      const raw = await this.#currentRaw(e.id)
      if (!raw || kindOf(raw) !== PLAN_KIND) continue
      const jobs = jobsOf(raw)
      const docs = [e.id]
      for (const j of jobs) {
        const rid = reportDocId(e.id, j)
        if (await this.#hasLog(e.id, rid)) docs.push(rid)
      }
      out.push({ id: e.id, name: this.index.plans.get(e.id)?.name ?? e.name, role: token.role, createdAt: e.createdAt, createdBy: e.createdBy, jobs, docs })
    }
    return out
  }

  // ------------------------------------------------------------------ index / local changes

  /**
   * A plan of the store in the index (name, jobs). Read without its view (#currentRaw): at start, this
   * read is the one the first sync's plans call would make, and after a local write only the new chunk
   * files are read.
   */
  async #indexPlan(planId: string): Promise<boolean> {
    try {
      const raw = await this.#currentRaw(planId)
      if (!raw || kindOf(raw) !== PLAN_KIND) return false
      this.index.setPlan(planId, rootText(raw, "name") ?? "", jobsOf(raw))
      return true
    } catch (e) {
      this.#log(`warning: cannot index plan ${planId}: ${(e as Error).message}`)
      return false
    }
  }

  #watchPlan(planId: string): void {
    const ids = [planId, ...this.index.reportIds(planId).keys()]
    for (const id of ids) {
      if (this.#watched.has(id)) continue
      this.#watched.add(id)
      this.#watcher?.add(id)
    }
  }

  /** Plans created locally (plan create) while the server runs. */
  async #pollIndex(): Promise<void> {
    if (this.#closing) return
    try {
      for (const p of await this.store.listPlans()) {
        if (this.index.has(p.id)) continue
        if (await this.#indexPlan(p.id)) {
          this.#watchPlan(p.id)
          this.#log(`plan ${p.id} (${p.name}) found in the local store`)
        }
      }
    } catch (e) {
      this.#log(`warning: reading the plans index: ${(e as Error).message}`)
    }
  }

  /**
   * Local processes wrote chunk files of a document: into the Repo's handle with them (only what is
   * new: a report costs that report, whatever the size of its log), so peers get it at once.
   */
  #onLocalChunks(docId: string, chunks: WatchedChunk[]): void {
    if (this.#closing) return
    const h = this.repo.handles[docId as DocumentId]
    const apply = () => {
      try {
        const doc = h.doc() as A.Doc<unknown>
        // (a compaction's snapshot, or a chunk this process wrote, holds nothing new)
        const fresh = chunks.filter(c => !holdsChunk(doc, c.data))
        if (fresh.length) h.update(d => fresh.reduce((x, c) => A.loadIncremental(x, c.data), d))
      } catch (e) {
        this.#log(`warning: merging local changes of ${docId}: ${(e as Error).message}`)
      }
      this.#noteLocalPlan(docId, h.doc() as A.Doc<unknown>)
    }
    if (!h) {
      // not loaded: the Repo reads the disk when a peer asks for it
      if (this.index.has(docId)) void this.#indexPlan(docId)
    } else if (h.isReady()) apply()
    else if (h.state === "unavailable" || h.state === "requesting") {
      // a peer asked for it before it existed here: give it the whole document now (the handle becomes ready)
      void this.#reader
        .load<unknown>(docId, { keepCopy: false })
        .then(doc => {
          if (!doc || this.#closing) return
          h.update(d => A.merge(d, doc))
          this.#noteLocalPlan(docId, doc)
        })
        .catch(e => this.#log(`warning: merging local changes of ${docId}: ${(e as Error).message}`))
    } else if (h.state === "loading" || h.state === "idle") {
      // a load from disk is under way and replaces the doc when done: apply after it
      void h.whenReady().then(apply, () => {})
    }
  }

  /** A plan written locally may have got jobs: the index (access control) follows. */
  #noteLocalPlan(docId: string, doc: A.Doc<unknown>): void {
    if (this.index.has(docId) && isPlanDoc(doc)) {
      const v = readPlan(doc)
      this.index.setPlan(
        docId,
        v.name,
        v.jobs.map(j => j.name)
      )
    }
  }

  /** Tokens removed from the tokens file lose their open connections too. */
  async #dropRevoked(): Promise<void> {
    if (this.#closing) return
    for (const p of this.adapter.peers) {
      try {
        if (!(await this.tokens.stillValid(p.principal.token))) this.adapter.closePeer(p.peerId, `token ${p.principal.token.id} was revoked`)
      } catch {
        // keep the connection; checked again next time
      }
    }
  }

  #noteDoc(docId: string): void {
    if (this.index.has(docId) || this.#pending.has(docId)) return
    if (this.index.lookup(docId)) return // a report log of a known plan
    this.#pending.set(docId, Date.now())
  }

  async #checkPending(): Promise<void> {
    if (this.#pending.size === 0 || this.#closing) return
    const ready: string[] = []
    for (const [id, since] of this.#pending) {
      const h = this.repo.handles[id as DocumentId]
      if (h?.isReady()) {
        ready.push(id)
        this.#pending.delete(id)
      } else if (Date.now() - since > 120_000) this.#pending.delete(id)
    }
    if (ready.length) await this.#registerArrivedPlans(ready)
  }

  /** Plans that arrived over the network: durable first, then in the plans index, watched. */
  async #registerArrivedPlans(ids: string[]): Promise<void> {
    for (const id of ids) {
      if (this.index.has(id) || this.#registering.has(id)) continue
      const h = this.repo.handles[id as DocumentId]
      if (!h?.isReady()) continue
      const doc = h.doc() as A.Doc<unknown>
      if (!isPlanDoc(doc)) continue
      this.#registering.add(id)
      try {
        await this.repo.flush([id as DocumentId])
        await this.#indexArrived(id, doc)
      } catch (e) {
        this.#log(`warning: cannot register plan ${id}: ${(e as Error).message}`)
      } finally {
        this.#registering.delete(id)
      }
    }
  }
}

/** The root `kind` of a document read without its view (a plan's is PLAN_KIND). */
function kindOf(raw: Backend): string | undefined {
  return rootText(raw, "kind")
}

/** A string (or text) at the root of a document read without its view; undefined if none. */
function rootText(raw: Backend, key: string): string | undefined {
  try {
    const v = raw.getWithType("_root", key)
    if (v?.[0] === "str") return v[1] as string
    if (v?.[0] === "text") return raw.text(v[1] as string)
  } catch {
    // not a map root, damaged: not a plan
  }
  return undefined
}

/** A judgement whose changes build on changes neither the server nor the message has. */
function newMissingDeps(j: Judgement & { ok: true }, before: string[]): boolean {
  const had = new Set(before)
  const now = j.raw ? j.raw.getMissingDeps([]) : j.doc ? A.getMissingDeps(j.doc, []) : []
  return now.some(h => !had.has(h))
}

/** A request body as bytes, refused (Error) past `maxBytes`: at once when its declared length is over. */
function readBinaryBody(req: http.IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"])
  if (Number.isFinite(declared) && declared > maxBytes) {
    req.resume()
    return Promise.reject(new Error(`request body of ${declared} bytes is over the limit`))
  }
  return readBodyBytes(req, maxBytes)
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store" })
  res.end(text)
}

/** Read a PEM file for --tls-cert / --tls-key with a clear error. */
export async function readPem(file: string, what: string): Promise<Buffer> {
  try {
    return await fsp.readFile(file)
  } catch (e) {
    throw Object.assign(new Error(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`), { exitCode: 2 })
  }
}

/** The audit trail's records of the changes a token sent for a document (judged and accepted). */
function auditRecords(token: TokenRecord, remote: string, docId: string, j: Judgement & { ok: true }, now: number): AuditRecord[] {
  return j.changes.map(c => ({
    v: 1,
    at: now,
    hash: c.hash,
    doc: docId,
    token: token.id,
    ...(token.label ? { label: token.label } : {}),
    role: token.role,
    remote,
    by: c.by,
    actor: c.actor,
    ...(j.created ? { created: true } : {}),
  }))
}
