/**
 * The client side of the WebSocket transport: an automerge-repo NetworkAdapter speaking the wire
 * protocol of `@automerge/automerge-repo-network-websocket` (join / peer, then automerge-repo messages),
 * without the 2.5.6 client's pitfalls:
 *
 *  - socket errors never throw (the stock `onError` rethrows anything but ECONNREFUSED);
 *  - `send` on a closed or connecting socket drops the message instead of throwing;
 *  - `disconnect()` really stops: no timer or socket is left to keep the process alive;
 *  - reconnects with exponential backoff and jitter (`retry`), or not at all;
 *  - the access token goes in the URL query (`?token=`), since a WebSocket client cannot set headers
 *    in browsers and the stock adapter has no option for it;
 *  - an HTTP refusal of the upgrade (401, 403, ...) is reported on `events` ("rejected") and stops
 *    the retries; a `concord-refused` notice from the server is reported ("refused");
 *  - a sync conversation that lost a message (stall.ts) is started afresh: the connection is dropped
 *    and re-made at once (`resync`), which resets the sync state on both sides. With `refusedResyncMs`
 *    (sync --watch) the same happens after the server refused a message under its rate limit;
 *  - a join the server does not answer (its `peer` lost on the way: the network chaos run's proxy) drops
 *    the connection after `joinTimeoutMs` and makes it again, instead of waiting on it for good.
 */
import * as A from "@automerge/automerge"
import { EventEmitter } from "node:events"
import { NetworkAdapter, type PeerId, type PeerMetadata, type RepoMessage } from "@automerge/automerge-repo/slim"
import WebSocket from "ws"
import { checkServerMessage, decodeFrame, encodeFrame, isObject, ProtocolV1, REFUSED_TYPE, type RefusedMessage } from "./protocol.js"
import { SyncStallDetector } from "./stall.js"

export interface ClientAdapterOptions {
  /** Access token, sent as the `token` query parameter. */
  token?: string
  /** Extra CA certificate(s) (PEM) to trust for wss:// (e.g. a self-signed server certificate). */
  ca?: string | Buffer
  /** Reconnect after the connection failed or closed. Default true. */
  retry?: boolean
  /** First reconnect delay; doubles up to maxRetryMs (with jitter). Defaults 250 ms / 10 s. */
  minRetryMs?: number
  maxRetryMs?: number
  /** Largest frame accepted from the server. Default 64 MiB. */
  maxPayload?: number
  /** Give up on one connection attempt after this long. Default 10 s. */
  connectTimeoutMs?: number
  /**
   * Drop a connection whose server has not answered our join (`peer`) after this long, and make it again:
   * the answer was lost on the way (a proxy or a network that loses data without closing the
   * connection), and nothing else would ever happen on it. Default 10 s.
   */
  joinTimeoutMs?: number
  log?: (line: string) => void
  /** Same `need` repeated this many times in a row = a stalled sync conversation (stall.ts). Default 6. */
  stallRepeats?: number
  /**
   * After a rate-limit refusal, resync after this long (the server's bucket refills), so that the
   * refused changes are sent again: for long-running syncs. Default: no resync (a one-shot sync fails
   * with the server's reason instead).
   */
  refusedResyncMs?: number
}

export interface ClientAdapterEvents {
  /** the server answered `peer`: connected and joined */
  connected: [serverPeerId: PeerId]
  /** the connection closed or could not be made; `retryInMs` is undefined when not retrying */
  disconnected: [reason: string, retryInMs: number | undefined]
  /** the server refused the upgrade with this HTTP status; no more retries */
  rejected: [status: number, body: string]
  /** the server dropped one of our messages (access control, rate limit) */
  refused: [notice: RefusedMessage]
  /** the sync conversation lost a message; the connection is being re-made to start it afresh */
  resync: [why: string]
}

export class ConcordClientAdapter extends NetworkAdapter {
  readonly url: string
  readonly events = new EventEmitter<ClientAdapterEvents>()
  remotePeerId?: PeerId
  readonly #opts: ClientAdapterOptions
  #ws?: WebSocket
  #stopped = true
  #fatal = false
  #attempt = 0
  #retryTimer?: NodeJS.Timeout
  #ready = false
  #readyResolve!: () => void
  readonly #readyPromise = new Promise<void>(r => (this.#readyResolve = r))
  readonly #stall: SyncStallDetector
  #resyncWhy?: string
  #resyncStreak = 0
  #lastResyncAt = 0
  #resyncTimer?: NodeJS.Timeout

  constructor(url: string, opts: ClientAdapterOptions = {}) {
    super()
    this.url = url
    this.#opts = opts
    this.#stall = new SyncStallDetector(opts.stallRepeats ?? 6)
  }

  isReady(): boolean {
    return this.#ready
  }

  whenReady(): Promise<void> {
    return this.#readyPromise
  }

  get connected(): boolean {
    return this.remotePeerId !== undefined
  }

  connect(peerId: PeerId, peerMetadata?: PeerMetadata): void {
    this.peerId = peerId
    this.peerMetadata = peerMetadata ?? this.peerMetadata ?? {}
    this.#stopped = false
    this.#fatal = false
    this.#attempt = 0
    clearTimeout(this.#retryTimer)
    this.#open()
    // As the stock adapter does: do not hold up the Repo (finds of unknown documents) for more than a
    // second while the server is slow or away.
    setTimeout(() => this.#markReady(), 1000).unref()
  }

  disconnect(): void {
    this.#stopped = true
    clearTimeout(this.#retryTimer)
    clearTimeout(this.#resyncTimer)
    this.#retryTimer = undefined
    const ws = this.#ws
    this.#ws = undefined
    if (ws) {
      ws.removeAllListeners()
      ws.on("error", () => {})
      try {
        if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
        else ws.close(1000, "client disconnected")
      } catch {
        // already closed
      }
    }
    this.#lostPeer()
  }

  /**
   * Drop the connection and make it again at once: both sides then start every document's sync
   * conversation afresh (from the heads they share), so what was lost is sent again.
   */
  resync(why: string): void {
    const ws = this.#ws
    if (this.#stopped || !ws || ws.readyState !== WebSocket.OPEN || this.#resyncWhy) return
    this.#resyncWhy = why
    this.#log(`resync: ${why}`)
    this.events.emit("resync", why)
    ws.terminate()
  }

  send(message: RepoMessage): void {
    const ws = this.#ws
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.peerId) return
    if ("data" in message && message.data && message.data.byteLength === 0) return
    this.#watchSync("out", message)
    try {
      ws.send(encodeFrame(message))
    } catch (e) {
      this.#log(`send failed: ${(e as Error).message}`)
    }
  }

  // ------------------------------------------------------------------ internals

  #log(line: string): void {
    try {
      this.#opts.log?.(line)
    } catch {
      // ignore
    }
  }

  /** Feed the stall detector; resync when a document's conversation keeps asking for the same changes. */
  #watchSync(direction: "in" | "out", message: { type?: unknown; documentId?: unknown; data?: unknown }): void {
    if ((message.type !== "sync" && message.type !== "request") || !(message.data instanceof Uint8Array)) return
    let need: string[]
    try {
      need = A.decodeSyncMessage(message.data).need
    } catch {
      return // not ours to judge; the Repo reports a malformed message
    }
    const stuck = this.#stall.see(direction, String(message.documentId), need)
    if (stuck) {
      this.resync(
        `document ${stuck.documentId}: ${stuck.direction === "out" ? "we" : "the server"} asked ${stuck.repeats} times in a row for ` +
          `${stuck.need.length} change(s) that never came (a lost message)`
      )
    }
  }

  #markReady(): void {
    if (!this.#ready) {
      this.#ready = true
      this.#readyResolve()
    }
  }

  #socketUrl(): string {
    const u = new URL(this.url)
    if (this.#opts.token !== undefined) u.searchParams.set("token", this.#opts.token)
    return u.toString()
  }

  #open(): void {
    if (this.#stopped) return
    let ws: WebSocket
    try {
      ws = new WebSocket(this.#socketUrl(), {
        maxPayload: this.#opts.maxPayload ?? 64 * 1024 * 1024,
        handshakeTimeout: this.#opts.connectTimeoutMs ?? 10_000,
        ...(this.#opts.ca ? { ca: this.#opts.ca } : {}),
      })
    } catch (e) {
      // bad URL: nothing will ever work
      this.#fatal = true
      this.#markReady()
      this.events.emit("disconnected", `cannot connect to ${this.url}: ${(e as Error).message}`, undefined)
      return
    }
    this.#ws = ws
    this.#stall.reset()
    ws.binaryType = "nodebuffer"
    let why = "connection closed"
    let joinTimer: NodeJS.Timeout | undefined
    ws.on("open", () => {
      if (this.#ws !== ws) return
      const waitMs = this.#opts.joinTimeoutMs ?? 10_000
      joinTimer = setTimeout(() => {
        if (this.#ws !== ws) return
        why = `the server did not answer our join within ${(waitMs / 1000).toFixed(1)}s`
        ws.terminate()
      }, waitMs)
      const join = { type: "join", senderId: this.peerId, peerMetadata: this.peerMetadata ?? {}, supportedProtocolVersions: [ProtocolV1] }
      try {
        ws.send(encodeFrame(join))
      } catch (e) {
        this.#log(`join failed: ${(e as Error).message}`)
      }
    })
    let refusedWhy: string | undefined
    ws.on("unexpected-response", (req, res) => {
      const status = res.statusCode ?? 0
      refusedWhy = `server refused the connection: HTTP ${status}`
      if (status === 401 || status === 403) this.#fatal = true
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (d: string) => (body += d.slice(0, 1000)))
      res.on("error", () => {})
      // report at once; the body (if it comes within 200 ms) only adds detail
      const t = setTimeout(() => {
        res.destroy()
        req.destroy()
        ws.terminate()
      }, 200)
      res.on("end", () => {
        clearTimeout(t)
        this.events.emit("rejected", status, body.trim())
        req.destroy()
        ws.terminate()
      })
      if (status === 401 || status === 403) this.#markReady()
    })
    ws.on("error", err => {
      why = (err as NodeJS.ErrnoException).code ?? err.message
      this.#log(`connection error: ${err.message}`)
    })
    ws.on("message", (data, isBinary) => {
      if (this.#ws !== ws || !isBinary) return
      let msg: unknown
      try {
        msg = decodeFrame(Array.isArray(data) ? Buffer.concat(data) : (data as Buffer))
      } catch (e) {
        this.#log(`malformed frame from the server: ${(e as Error).message}`)
        return
      }
      if (!checkServerMessage(msg)) return
      const m = msg as unknown as Record<string, unknown>
      switch (m.type) {
        case "peer":
          clearTimeout(joinTimer)
          this.#attempt = 0
          this.remotePeerId = m.senderId as PeerId
          this.#markReady()
          this.emit("peer-candidate", { peerId: m.senderId as PeerId, peerMetadata: (isObject(m.peerMetadata) ? m.peerMetadata : {}) as PeerMetadata })
          this.events.emit("connected", m.senderId as PeerId)
          return
        case "error":
          this.#log(`server error: ${String(m.message)}`)
          why = `server error: ${String(m.message)}`
          return
        case REFUSED_TYPE:
          this.events.emit("refused", m as unknown as RefusedMessage)
          // The refused message is lost for this conversation: under a rate limit, wait for the
          // server's bucket to refill, then start afresh so that its changes are sent again.
          if (this.#opts.refusedResyncMs !== undefined && /^rate limit/.test(String(m.reason)) && !this.#resyncTimer) {
            this.#resyncTimer = setTimeout(() => {
              this.#resyncTimer = undefined
              if (this.#ws === ws) this.resync(`the server refused a message under its rate limit`)
            }, this.#opts.refusedResyncMs)
          }
          return
        default:
          if (!this.remotePeerId) return
          this.#watchSync("in", m)
          this.emit("message", m as unknown as RepoMessage)
      }
    })
    ws.on("close", (code, reason) => {
      clearTimeout(joinTimer)
      if (this.#ws !== ws) return
      this.#ws = undefined
      const r = reason?.toString()
      const resyncWhy = this.#resyncWhy
      this.#resyncWhy = undefined
      if (resyncWhy) why = `resync: ${resyncWhy}`
      else if (refusedWhy) why = refusedWhy
      else if (r) why = r
      else if (code && code !== 1006 && code !== 1005 && why === "connection closed") why = `closed (${code})`
      this.#lostPeer()
      this.#markReady()
      const retry = !this.#stopped && !this.#fatal && this.#opts.retry !== false
      const delay = retry ? (resyncWhy ? this.#resyncDelay() : this.#backoff()) : undefined
      this.events.emit("disconnected", why, delay)
      if (delay !== undefined) {
        this.#retryTimer = setTimeout(() => this.#open(), delay)
      }
    })
  }

  /** A resync reconnects at once (the server is there); resyncs that keep coming back to back slow down. */
  #resyncDelay(): number {
    const now = Date.now()
    this.#resyncStreak = now - this.#lastResyncAt < 30_000 ? this.#resyncStreak + 1 : 0
    this.#lastResyncAt = now
    return this.#resyncStreak === 0 ? 20 : Math.min(this.#opts.maxRetryMs ?? 10_000, 250 * 2 ** Math.min(this.#resyncStreak - 1, 10))
  }

  #backoff(): number {
    const min = this.#opts.minRetryMs ?? 250
    const max = this.#opts.maxRetryMs ?? 10_000
    const base = Math.min(max, min * 2 ** Math.min(this.#attempt, 20))
    this.#attempt++
    return Math.round(base / 2 + Math.random() * (base / 2))
  }

  #lostPeer(): void {
    const peer = this.remotePeerId
    this.remotePeerId = undefined
    if (peer) this.emit("peer-disconnected", { peerId: peer })
  }
}
