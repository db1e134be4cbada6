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
import os from "node:os"
import { InputError } from "../../doc/errors.js"
import { sameHeads } from "../../doc/heads.js"
import { ServerApi, SyncError } from "./api.js"
import { parseServerUrl } from "./url.js"
import { isDocId } from "../../doc/ids.js"
import { ConcordClientAdapter } from "./ClientAdapter.js"
import { installPromptSync, type PromptSyncResult } from "./prompt.js"
import type { RefusedMessage } from "./protocol.js"

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

export { type PlansResponse, type RemoteTarget, ServerApi, SyncError } from "./api.js"

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
