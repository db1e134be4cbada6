/**
 * The client side of concord sync: a RemoteSession is an in-memory automerge-repo Repo (no storage, so
 * the server never keeps sync state for it) connected to a concord server through ConcordClientAdapter,
 * plus the server's small HTTP API (plans list, durable heads).
 *
 * Documents go in from the local store (DocStore) or are fetched from the server; when the sync is done
 * they go back to the local store with DocStore.save, which only ever adds chunks: changes other local
 * processes wrote meanwhile are never overwritten.
 *
 * "Done" means both sides have each other's changes: the server's heads for every document (reported
 * through the sync protocol, then confirmed over HTTP after the server wrote them durably) equal ours.
 */
import * as A from "@automerge/automerge"
import { type DocHandle, type DocumentId, type PeerId, Repo } from "@automerge/automerge-repo"
import { randomBytes } from "node:crypto"
import http from "node:http"
import https from "node:https"
import os from "node:os"
import { ConcordError, InputError } from "../../doc/errors.js"
import { isDocId } from "../../doc/ids.js"
import { ConcordClientAdapter } from "./ClientAdapter.js"
import { installPromptSync, type PromptSyncResult } from "./prompt.js"
import type { RefusedMessage } from "./protocol.js"
import type { ServerPlanInfo } from "./server.js"

/** Sync failed: server unreachable, token or change refused, or no convergence in time. Exit code 1. */
export class SyncError extends ConcordError {
  readonly kind: "unreachable" | "unauthorized" | "refused" | "timeout" | "protocol"
  constructor(kind: SyncError["kind"], message: string) {
    super(message, 1)
    this.name = "SyncError"
    this.kind = kind
  }
}

export interface ConnectOptions {
  url: string
  token?: string
  /** PEM CA certificate(s) to trust (self-signed server). NODE_EXTRA_CA_CERTS works too. */
  ca?: string | Buffer
  log?: (line: string) => void
  /** Reconnect after losing the server (default true). */
  retry?: boolean
  /** How long to wait for the first connection. Default 15 s. */
  connectTimeoutMs?: number
  /** Re-make the connection this long after a rate-limit refusal, to send the refused changes again. */
  refusedResyncMs?: number
  /** Send local changes at once (prompt.ts; default true), or through automerge-repo's 100 ms throttle only. */
  promptSync?: boolean
}

/** A sync server to talk to: its URL, the access token, and a CA to trust for wss://. */
export interface RemoteTarget {
  url: string
  token?: string
  ca?: Buffer
}

export interface PlansResponse {
  server: { peerId: string; storageId: string }
  token: { id: string; role: string; plans: string[] }
  plans: ServerPlanInfo[]
}

/** Normalise a server URL: ws(s):// or http(s)://, no token in it. */
export function parseServerUrl(url: string): { ws: URL; http: URL } {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new InputError(`invalid server URL "${url}": expected ws://HOST:PORT or wss://HOST:PORT`)
  }
  const proto = u.protocol
  if (!["ws:", "wss:", "http:", "https:"].includes(proto)) {
    throw new InputError(`invalid server URL "${url}": expected ws://, wss://, http:// or https://`)
  }
  if (u.searchParams.has("token")) throw new InputError("put the token in --token (or $CONCORD_TOKEN), not in the URL")
  const secure = proto === "wss:" || proto === "https:"
  const ws = new URL(u.toString())
  ws.protocol = secure ? "wss:" : "ws:"
  const h = new URL(u.toString())
  h.protocol = secure ? "https:" : "http:"
  return { ws, http: h }
}

export class ServerApi {
  readonly base: URL
  constructor(
    url: string,
    readonly token: string | undefined,
    readonly ca?: string | Buffer
  ) {
    this.base = parseServerUrl(url).http
  }

  #url(suffix: string): URL {
    const u = new URL(this.base.toString())
    u.pathname = `${u.pathname.replace(/\/+$/, "")}${suffix}`
    return u
  }

  request<T>(method: "GET" | "POST", suffix: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
    const u = this.#url(suffix)
    const lib = u.protocol === "https:" ? https : http
    const payload = body === undefined ? undefined : JSON.stringify(body)
    return new Promise<T>((resolve, reject) => {
      const req = lib.request(
        u,
        {
          method,
          headers: {
            ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
            ...(payload ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {}),
          },
          timeout: timeoutMs,
          ...(this.ca ? { ca: this.ca } : {}),
        },
        res => {
          let text = ""
          res.setEncoding("utf8")
          res.on("data", d => (text += d))
          res.on("error", e => reject(new SyncError("unreachable", `lost the server at ${this.base.host}: ${e.message}`)))
          res.on("end", () => {
            let v: unknown
            try {
              v = JSON.parse(text)
            } catch {
              v = undefined
            }
            const status = res.statusCode ?? 0
            const err = (v as { error?: string } | undefined)?.error ?? text.trim().slice(0, 200)
            if (status === 401)
              return reject(new SyncError("unauthorized", `the server at ${this.base.host} refused the token (HTTP 401: ${err || "unauthorized"})`))
            if (status === 403) return reject(new SyncError("refused", `the server at ${this.base.host} refused: ${err} (HTTP 403)`))
            if (status < 200 || status >= 300 || v === undefined) {
              return reject(new SyncError("protocol", `unexpected answer from ${u.host}${u.pathname}: HTTP ${status} ${err}`))
            }
            resolve(v as T)
          })
        }
      )
      req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
      req.on("error", e => {
        const code = (e as NodeJS.ErrnoException).code
        reject(new SyncError("unreachable", `cannot reach the server at ${this.base.host}: ${code ?? e.message}`))
      })
      if (payload) req.write(payload)
      req.end()
    })
  }

  /**
   * POST /v1/exchange (exchange.ts): the framed request, the framed answer. Null when the server has no
   * such endpoint (HTTP 404: a concord server from before it).
   */
  exchange(body: Buffer, timeoutMs = 120_000): Promise<Buffer | null> {
    const u = this.#url("/v1/exchange")
    const lib = u.protocol === "https:" ? https : http
    return new Promise<Buffer | null>((resolve, reject) => {
      const req = lib.request(
        u,
        {
          method: "POST",
          headers: {
            ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
            "content-type": "application/octet-stream",
            "content-length": body.byteLength,
          },
          timeout: timeoutMs,
          ...(this.ca ? { ca: this.ca } : {}),
        },
        res => {
          const chunks: Buffer[] = []
          res.on("data", (d: Buffer) => chunks.push(d))
          res.on("error", e => reject(new SyncError("unreachable", `lost the server at ${this.base.host}: ${e.message}`)))
          res.on("end", () => {
            const buf = Buffer.concat(chunks)
            const status = res.statusCode ?? 0
            if (status === 200) return resolve(buf)
            if (status === 404) return resolve(null)
            let err = buf.toString("utf8").trim().slice(0, 300)
            try {
              err = (JSON.parse(err) as { error?: string }).error ?? err
            } catch {
              // not JSON: the text itself
            }
            if (status === 401) return reject(new SyncError("unauthorized", `the server at ${this.base.host} refused the token (HTTP 401: ${err || "unauthorized"})`))
            if (status === 403 || status === 413) return reject(new SyncError("refused", `the server at ${this.base.host} refused: ${err} (HTTP ${status})`))
            if (status === 503) return reject(new SyncError("unreachable", `the server at ${this.base.host} is not serving: ${err} (HTTP 503)`))
            reject(new SyncError("protocol", `unexpected answer from ${u.host}${u.pathname}: HTTP ${status} ${err}`))
          })
        }
      )
      req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
      req.on("error", e => {
        const code = (e as NodeJS.ErrnoException).code
        reject(new SyncError("unreachable", `cannot reach the server at ${this.base.host}: ${code ?? e.message}`))
      })
      req.end(body)
    })
  }

  plans(): Promise<PlansResponse> {
    return this.request<PlansResponse>("GET", "/v1/plans")
  }

  /**
   * The server's durable heads of these documents. With `want` (heads per document), the server first
   * waits up to `waitMs` until it has them (a server that does not know `want` answers at once).
   */
  async confirm(docIds: string[], want?: Record<string, string[]>, waitMs = 0): Promise<Record<string, string[] | null>> {
    const body = want ? { docs: docIds, want, waitMs } : { docs: docIds }
    const r = await this.request<{ heads: Record<string, string[] | null> }>("POST", "/v1/confirm", body, 30_000 + waitMs)
    return r.heads
  }
}

const sameHeads = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every(h => b.includes(h))
/** How long the server may hold a confirmation until it has our heads (long poll). */
const CONFIRM_WAIT_MS = 1500
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

export class RemoteSession {
  readonly repo: Repo
  readonly adapter: ConcordClientAdapter
  readonly api: ServerApi
  readonly refusals: RefusedMessage[] = []
  rejected?: { status: number; body: string }
  lastDisconnect?: string
  /** prompt forwarding of local changes (prompt.ts), or why it is not installed */
  readonly prompt: PromptSyncResult
  readonly #log: (line: string) => void
  #closed = false

  private constructor(opts: ConnectOptions) {
    const { ws } = parseServerUrl(opts.url)
    this.#log = opts.log ?? (() => {})
    this.api = new ServerApi(opts.url, opts.token, opts.ca)
    this.adapter = new ConcordClientAdapter(ws.toString(), {
      token: opts.token,
      ca: opts.ca,
      retry: opts.retry !== false,
      refusedResyncMs: opts.refusedResyncMs,
      // socket-level detail only when asked for (CONCORD_DEBUG=1)
      log: process.env.CONCORD_DEBUG ? l => this.#log(`debug: ${l}`) : undefined,
    })
    this.adapter.events.on("refused", n => {
      this.refusals.push(n)
      this.#log(`the server refused changes${n.documentId ? ` to ${n.documentId}` : ""}: ${n.reason}`)
    })
    this.adapter.events.on("rejected", (status, body) => (this.rejected = { status, body }))
    this.adapter.events.on("disconnected", (why, retry) => {
      this.lastDisconnect = why
      if (!this.#closed) this.#log(`disconnected from ${ws.host} (${why})${retry !== undefined ? `; reconnecting in ${(retry / 1000).toFixed(1)}s` : ""}`)
    })
    // quiet on the first connection; say so when the connection comes back
    this.adapter.events.on("connected", () => this.lastDisconnect !== undefined && this.#log(`connected to ${ws.host} again`))
    this.repo = new Repo({
      network: [this.adapter],
      peerId: `concord-${os.hostname().split(".")[0]}-${process.pid}-${randomBytes(3).toString("hex")}` as PeerId,
      shareConfig: { announce: async () => true, access: async () => true },
    })
    // local changes go to the server at once, not up to 100 ms later (prompt.ts)
    this.prompt = opts.promptSync === false ? { installed: false, reason: "turned off (promptSync: false)" } : installPromptSync(this.repo)
    if (!this.prompt.installed && process.env.CONCORD_DEBUG) this.#log(`debug: changes are sent at most every 100 ms (${this.prompt.reason})`)
  }

  /** Connect; resolves once the server answered the join. */
  static async open(opts: ConnectOptions): Promise<RemoteSession> {
    const s = new RemoteSession(opts)
    try {
      await s.#waitConnected(opts.connectTimeoutMs ?? 15_000)
    } catch (e) {
      await s.close()
      throw e
    }
    return s
  }

  async #waitConnected(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.adapter.connected) {
      this.#throwIfRejected()
      if (Date.now() > deadline) {
        const r = this.rejected ? `HTTP ${this.rejected.status}${this.rejected.body ? `: ${this.rejected.body}` : ""}` : this.lastDisconnect
        throw new SyncError("unreachable", `cannot connect to ${this.adapter.url.split("?")[0]}${r ? ` (${r})` : ""}`)
      }
      await sleep(20)
    }
  }

  #throwIfRejected(): void {
    // 401 / 403 are final; anything else (a proxy's 502, a server shutting down: 503) is retried
    if (this.rejected && (this.rejected.status === 401 || this.rejected.status === 403)) {
      const { status, body } = this.rejected
      throw new SyncError(status === 401 ? "unauthorized" : "refused", `the server refused the connection (HTTP ${status}${body ? `: ${body}` : ""})`)
    }
  }

  get connected(): boolean {
    return this.adapter.connected
  }

  handle<T = unknown>(docId: string): DocHandle<T> | undefined {
    const h = this.repo.handles[docId as DocumentId] as DocHandle<T> | undefined
    return h?.isReady() ? h : undefined
  }

  /**
   * Put a local document into the session (it is then offered to the server). The session takes the
   * document itself, without saving and loading it again: the caller must not use `doc` afterwards
   * (the Repo changes it as the sync goes on).
   */
  importDoc<T>(docId: string, doc: A.Doc<T>): DocHandle<T> {
    const existing = this.repo.handles[docId as DocumentId] as DocHandle<T> | undefined
    if (existing?.isReady()) {
      existing.update(d => A.merge(d, doc))
      return existing
    }
    // Repo.import(bytes, { docId }) creates the handle and applies `bytes` with loadIncremental; with
    // no bytes it only creates the handle, which then takes the already loaded document.
    const handle = this.repo.import<T>(new Uint8Array(0), { docId: docId as DocumentId })
    handle.update(() => doc)
    return handle
  }

  /** Merge more local changes into a document of the session. */
  merge<T>(docId: string, doc: A.Doc<T>): void {
    const h = this.repo.handles[docId as DocumentId] as DocHandle<T> | undefined
    if (!h?.isReady()) {
      this.importDoc(docId, doc)
      return
    }
    if (!A.getHeads(doc).every(x => A.hasHeads(h.doc() as A.Doc<T>, [x]))) h.update(d => A.merge(d, doc))
  }

  /** Fetch a document from the server; undefined if the server does not have it (or denies it). */
  async fetch<T>(docId: string, timeoutMs = 30_000): Promise<DocHandle<T> | undefined> {
    if (!isDocId(docId)) throw new InputError(`invalid document id ${docId}`)
    const ready = this.handle<T>(docId)
    if (ready) return ready
    const ac = new AbortController()
    const t = setTimeout(() => ac.abort(), timeoutMs)
    try {
      return await this.repo.find<T>(docId as DocumentId, { signal: ac.signal })
    } catch (e) {
      if (ac.signal.aborted) throw new SyncError("timeout", `the server did not send document ${docId} within ${timeoutMs / 1000}s`)
      if (/unavailable/.test((e as Error).message)) return undefined
      throw e
    } finally {
      clearTimeout(t)
    }
  }

  #serverHeads(h: DocHandle<unknown>): readonly string[] | undefined {
    const peer = this.adapter.remotePeerId
    if (!peer) return undefined
    const sid = this.repo.getStorageIdOfPeer(peer)
    return sid ? h.getSyncInfo(sid)?.lastHeads : undefined
  }

  /** Refusals concerning these documents (or any, if none names a document). */
  refusalFor(docIds: string[]): RefusedMessage | undefined {
    return this.refusals.find(r => !r.documentId || docIds.includes(r.documentId))
  }

  /**
   * Wait until the server has exactly what we have for each document (heads equal, durable on the
   * server). Throws SyncError on refusal or when `timeoutMs` passes (reconnects meanwhile are fine).
   */
  async waitSynced(docIds: string[], timeoutMs = 120_000): Promise<void> {
    if (docIds.length === 0) return
    const deadline = Date.now() + timeoutMs
    let lastConfirm = 0
    // a handle's heads in the Repo's encoding, computed again only when they changed (encoding them is a
    // pure-JS sha256 per head: polled for 1,000 documents every few tens of ms it was most of the sync)
    const encoded = new Map<string, { raw: string; heads: readonly string[] }>()
    const headsOf = (id: string, h: DocHandle<unknown>) => {
      const raw = A.getHeads(h.doc() as A.Doc<unknown>).join(",")
      let e = encoded.get(id)
      if (e?.raw !== raw) encoded.set(id, (e = { raw, heads: h.heads() }))
      return e.heads
    }
    for (;;) {
      this.#throwIfRejected()
      const refused = this.refusalFor(docIds)
      if (refused) {
        throw new SyncError("refused", `the server refused our changes${refused.documentId ? ` to document ${refused.documentId}` : ""}: ${refused.reason}`)
      }
      const handles = docIds.map(id => this.handle(id))
      const local = handles.every((h, i) => {
        if (!h) return false
        const sh = this.#serverHeads(h)
        return !!sh && sameHeads(sh, headsOf(docIds[i], h))
      })
      // Ask the server itself (durable heads) when the sync protocol says we agree, and now and then
      // anyway (heads reported by the protocol lag behind after a reconnect). Before we agree, the server
      // is asked to answer once it has our heads (or after CONFIRM_WAIT_MS): we learn at once that it has
      // our changes, instead of when its acknowledgement came back through the sync protocol.
      const sinceConfirm = Date.now() - lastConfirm
      if (this.connected && handles.every(Boolean) && ((local && sinceConfirm > 150) || sinceConfirm > 2000)) {
        lastConfirm = Date.now()
        const want =
          !local && docIds.length <= 1000 ? Object.fromEntries(docIds.map((id, i) => [id, A.getHeads(handles[i]!.doc() as A.Doc<unknown>)])) : undefined
        try {
          const server = await this.api.confirm(docIds, want, want ? CONFIRM_WAIT_MS : 0)
          if (handles.every((h, i) => server[docIds[i]] && sameHeads(server[docIds[i]]!, A.getHeads(h!.doc() as A.Doc<unknown>)))) return
        } catch (e) {
          if (e instanceof SyncError && (e.kind === "unauthorized" || e.kind === "refused")) throw e
          // server away: the adapter reconnects; try again
        }
      }
      if (Date.now() > deadline) {
        const behind = docIds.filter((_id, i) => !handles[i] || !sameHeads(this.#serverHeads(handles[i]!) ?? [], handles[i]!.heads()))
        throw new SyncError(
          "timeout",
          `sync did not complete within ${Math.round(timeoutMs / 1000)}s (${behind.length} of ${docIds.length} documents not in sync` +
            `${this.connected ? "" : `; not connected: ${this.lastDisconnect ?? "no connection"}`})`
        )
      }
      await sleep(local ? 30 : 50)
    }
  }

  /** Disconnect. Never waits on the server; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    try {
      this.adapter.disconnect()
    } catch {
      // ignore
    }
  }
}
