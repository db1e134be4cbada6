/**
 * The server side of the WebSocket transport: an automerge-repo NetworkAdapter speaking the wire
 * protocol of `@automerge/automerge-repo-network-websocket` (see protocol.ts), hardened for a server
 * that strangers can reach:
 *
 *  - sockets are handed in already authenticated (`accept(ws, principal)`, after the HTTP upgrade
 *    handler checked the token); the adapter never sees an unauthenticated socket;
 *  - every frame is decoded and shape-checked before the Repo sees it: malformed CBOR, text frames,
 *    frames before `join`, a sender id other than the joined one -> the connection is closed; unknown
 *    message types -> dropped and logged; oversize frames are refused by `ws` (maxPayload);
 *  - a connection that does not `join` within `helloTimeoutMs` is closed; dead peers are found by
 *    ping/pong and terminated;
 *  - an `inbound` hook (access control) judges each message, in order per connection, before the
 *    Repo sees it; refused messages are dropped, logged and answered with `concord-refused`;
 *  - an `outbound` hook may stop a message to a peer (defence in depth: nothing of a document the peer
 *    may not read leaves the server);
 *  - a peer id already held by another principal's live connection cannot be taken over;
 *  - client peer metadata is replaced by `{ isEphemeral: true }`: the server never persists sync state
 *    under a storage id a client chose;
 *  - `send` never throws (closed or closing sockets are skipped);
 *  - every connection is a new peer for the Repo (`<peer id>~<n>`, translated on the way in and out):
 *    automerge-repo keeps a peer's sync state after it disconnects and, on a server that does not
 *    announce documents, never resets it when the same peer id comes back, so a message lost with the
 *    old connection (in flight when it dropped, refused, cut by the network) was remembered as sent and
 *    never sent again: the client stayed behind for good. A fresh Repo peer per connection starts every
 *    conversation from scratch.
 */
import { NetworkAdapter, type PeerId, type PeerMetadata, type RepoMessage } from "@automerge/automerge-repo/slim"
import type { WebSocket } from "ws"
import { checkClientMessage, checkJoin, decodeFrame, encodeFrame, isObject, type JoinMessage, ProtocolV1, REFUSED_TYPE } from "./protocol.js"

export interface PeerInfo<P = unknown> {
  /** the id the Repo knows this connection by (`<client peer id>~<n>`) */
  peerId: PeerId
  /** the peer id the client joined with */
  clientPeerId: PeerId
  principal: P
  /** remote address, for logs */
  remote: string
}

export type Verdict = { ok: true } | { ok: false; reason: string }

export interface ServerAdapterHooks<P = unknown> {
  /** Judge a well-formed message from a joined peer. Runs in order per connection. */
  inbound?(peer: PeerInfo<P>, message: RepoMessage): Verdict | Promise<Verdict>
  /** May this message go to this peer? */
  outbound?(peer: PeerInfo<P>, message: RepoMessage): boolean
  /** Two principals are the same identity (may replace each other's connection under one peer id). */
  samePrincipal?(a: P, b: P): boolean
  /** Log line (connections, refusals, protocol errors). */
  log?(line: string): void
}

export interface ServerAdapterOptions<P = unknown> {
  hooks?: ServerAdapterHooks<P>
  /** Close a connection that has not sent `join` after this long. Default 10 s. */
  helloTimeoutMs?: number
  /** Ping interval; a peer that did not answer the previous ping is terminated. Default 15 s. */
  keepAliveMs?: number
  /** Stop reading from a socket while this many of its messages wait for the inbound hook. Default 64. */
  maxQueued?: number
}

interface Conn<P> {
  ws: WebSocket
  principal: P
  remote: string
  peerId?: PeerId
  /** this connection's peer id for the Repo (see the header) */
  repoId?: PeerId
  alive: boolean
  helloTimer?: NodeJS.Timeout
  queue: Promise<void>
  queued: number
  paused: boolean
  closed: boolean
}

const OPEN = 1

export class ConcordServerAdapter<P = unknown> extends NetworkAdapter {
  readonly #conns = new Map<PeerId, Conn<P>>()
  readonly #byRepoId = new Map<PeerId, Conn<P>>()
  #joins = 0
  readonly #all = new Set<Conn<P>>()
  readonly #hooks: ServerAdapterHooks<P>
  readonly #helloTimeoutMs: number
  readonly #keepAliveMs: number
  readonly #maxQueued: number
  #keepAlive?: NodeJS.Timeout
  #connected = false
  #ready = false
  #readyResolve!: () => void
  readonly #readyPromise = new Promise<void>(r => (this.#readyResolve = r))

  constructor(opts: ServerAdapterOptions<P> = {}) {
    super()
    this.#hooks = opts.hooks ?? {}
    this.#helloTimeoutMs = opts.helloTimeoutMs ?? 10_000
    this.#keepAliveMs = opts.keepAliveMs ?? 15_000
    this.#maxQueued = opts.maxQueued ?? 64
  }

  isReady(): boolean {
    return this.#ready
  }

  whenReady(): Promise<void> {
    return this.#readyPromise
  }

  /** Joined peers, with their principals. */
  get peers(): PeerInfo<P>[] {
    return [...this.#conns.values()].map(c => this.#info(c))
  }

  connect(peerId: PeerId, peerMetadata?: PeerMetadata): void {
    this.peerId = peerId
    this.peerMetadata = peerMetadata ?? {}
    this.#connected = true
    clearInterval(this.#keepAlive)
    this.#keepAlive = setInterval(() => this.#ping(), this.#keepAliveMs)
    this.#keepAlive.unref()
    // A server does not wait for anyone before it can answer: ready as soon as the Repo connected us.
    if (!this.#ready) {
      this.#ready = true
      this.#readyResolve()
    }
  }

  disconnect(): void {
    this.#connected = false
    clearInterval(this.#keepAlive)
    this.#keepAlive = undefined
    for (const c of [...this.#all]) this.#drop(c, "server adapter disconnected", 1001)
  }

  /** Take an authenticated socket. Closed at once if the adapter is not connected. */
  accept(ws: WebSocket, principal: P, remote = "?"): void {
    const conn: Conn<P> = { ws, principal, remote, alive: true, queue: Promise.resolve(), queued: 0, paused: false, closed: false }
    // 'error' must always have a listener: ws emits it for oversize frames, bad UTF-8, resets, ...
    ws.on("error", err => this.#log(`connection ${remote}${conn.peerId ? ` peer ${conn.peerId}` : ""}: ${(err as Error).message}`))
    if (!this.#connected) {
      safeClose(ws, 1013, "server not ready")
      return
    }
    this.#all.add(conn)
    conn.helloTimer = setTimeout(() => {
      if (!conn.peerId) this.#protocolError(conn, `no join within ${this.#helloTimeoutMs} ms`, 1008)
    }, this.#helloTimeoutMs)
    conn.helloTimer.unref()
    ws.on("pong", () => (conn.alive = true))
    ws.on("message", (data, isBinary) => {
      conn.alive = true
      try {
        this.#onFrame(conn, data as Buffer | ArrayBuffer | Buffer[], isBinary)
      } catch (e) {
        this.#protocolError(conn, `internal error handling a frame: ${(e as Error).message}`, 1011)
      }
    })
    ws.on("close", () => this.#forget(conn))
  }

  /** Close a peer's connection (e.g. its token was revoked). */
  closePeer(peerId: PeerId, why: string): void {
    const c = this.#byRepoId.get(peerId) ?? this.#conns.get(peerId)
    if (c) this.#protocolError(c, why, 1008)
  }

  send(message: RepoMessage): void {
    if (!this.#connected) return
    const conn = this.#byRepoId.get(message.targetId)
    if (!conn || conn.closed || conn.ws.readyState !== OPEN || !conn.peerId) return
    if ("data" in message && message.data && message.data.byteLength === 0) return
    try {
      if (this.#hooks.outbound && !this.#hooks.outbound(this.#info(conn), message)) {
        this.#log(`not sending ${message.type} for ${"documentId" in message ? message.documentId : "?"} to ${conn.peerId}: no access`)
        return
      }
      conn.ws.send(encodeFrame({ ...message, targetId: conn.peerId }))
    } catch (e) {
      this.#log(`send to ${conn.peerId} failed: ${(e as Error).message}`)
    }
  }

  // ------------------------------------------------------------------ internals

  #info(c: Conn<P>): PeerInfo<P> {
    return { peerId: c.repoId!, clientPeerId: c.peerId!, principal: c.principal, remote: c.remote }
  }

  #log(line: string): void {
    try {
      this.#hooks.log?.(line)
    } catch {
      // logging must never break the server
    }
  }

  #onFrame(conn: Conn<P>, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (conn.closed) return
    if (!isBinary) return this.#protocolError(conn, "text frame (the protocol is binary CBOR)", 1003)
    const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data
    let msg: unknown
    try {
      msg = decodeFrame(bytes)
    } catch (e) {
      return this.#protocolError(conn, `malformed CBOR frame (${(e as Error).message})`, 1003)
    }
    if (!isObject(msg) || typeof msg.type !== "string") return this.#protocolError(conn, "frame is not a message", 1003)
    if (msg.type === "join") return this.#onJoin(conn, msg)
    if (!conn.peerId) return this.#protocolError(conn, `${String(msg.type).slice(0, 40)} before join`, 1008)
    if (msg.senderId !== conn.peerId) return this.#protocolError(conn, "senderId differs from the joined peer id", 1008)
    const problem = checkClientMessage(msg)
    if (problem) {
      // Not fatal: log and drop (a newer client may speak message types we do not know).
      this.#log(`dropped a message from ${conn.peerId}: ${problem}`)
      return
    }
    const message = { ...msg, senderId: conn.repoId, targetId: this.peerId } as unknown as RepoMessage
    this.#enqueue(conn, message)
  }

  #onJoin(conn: Conn<P>, msg: Record<string, unknown>): void {
    const problem = checkJoin(msg)
    if (problem) {
      if (problem === "unsupported protocol version" && typeof msg.senderId === "string") {
        this.#sendRaw(conn, { type: "error", senderId: this.peerId, message: problem, targetId: msg.senderId })
      }
      return this.#protocolError(conn, problem, 1002)
    }
    const join = msg as unknown as JoinMessage
    const peerId = join.senderId
    if (conn.peerId && conn.peerId !== peerId) return this.#protocolError(conn, "join with a second peer id", 1008)
    const existing = this.#conns.get(peerId)
    if (existing && existing !== conn) {
      const same = this.#hooks.samePrincipal ? this.#hooks.samePrincipal(existing.principal, conn.principal) : true
      if (!same && !existing.closed && existing.ws.readyState === OPEN) {
        return this.#protocolError(conn, `peer id ${peerId} is in use by another client`, 1008)
      }
      // A reconnect of the same client: the old connection goes.
      this.#drop(existing, "replaced by a new connection of the same peer", 1000)
    }
    clearTimeout(conn.helloTimer)
    const first = !conn.peerId
    conn.peerId = peerId
    if (first) {
      conn.repoId = `${peerId}~${++this.#joins}` as PeerId
      this.#byRepoId.set(conn.repoId, conn)
    }
    this.#conns.set(peerId, conn)
    this.#sendRaw(conn, {
      type: "peer",
      senderId: this.peerId,
      peerMetadata: this.peerMetadata ?? {},
      selectedProtocolVersion: ProtocolV1,
      targetId: peerId,
    })
    if (first) {
      this.#log(`peer ${peerId} joined from ${conn.remote}`)
      this.emit("peer-candidate", { peerId: conn.repoId!, peerMetadata: { isEphemeral: true } })
    }
  }

  #enqueue(conn: Conn<P>, message: RepoMessage): void {
    conn.queued++
    if (conn.queued >= this.#maxQueued && !conn.paused) {
      conn.paused = true
      conn.ws.pause()
    }
    conn.queue = conn.queue
      .then(async () => {
        if (conn.closed || !this.#connected) return
        let verdict: Verdict = { ok: true }
        if (this.#hooks.inbound) {
          try {
            verdict = await this.#hooks.inbound(this.#info(conn), message)
          } catch (e) {
            verdict = { ok: false, reason: `access check failed: ${(e as Error).message}` }
          }
        }
        if (conn.closed || !this.#connected || this.#conns.get(conn.peerId!) !== conn) return
        if (!verdict.ok) {
          const doc = "documentId" in message ? message.documentId : undefined
          this.#log(`refused ${message.type} from ${conn.peerId}${doc ? ` for ${doc}` : ""}: ${verdict.reason}`)
          this.#sendRaw(conn, { type: REFUSED_TYPE, senderId: this.peerId, targetId: conn.peerId, documentId: doc, reason: verdict.reason })
          return
        }
        this.emit("message", message)
      })
      .catch(e => this.#log(`error handling a message from ${conn.peerId}: ${(e as Error).message}`))
      .finally(() => {
        conn.queued--
        if (conn.paused && conn.queued <= this.#maxQueued / 2 && !conn.closed) {
          conn.paused = false
          conn.ws.resume()
        }
      })
  }

  #sendRaw(conn: Conn<P>, message: Record<string, unknown>): void {
    if (conn.closed || conn.ws.readyState !== OPEN) return
    try {
      conn.ws.send(encodeFrame(message))
    } catch (e) {
      this.#log(`send failed: ${(e as Error).message}`)
    }
  }

  #protocolError(conn: Conn<P>, why: string, code: number): void {
    this.#log(`closing connection ${conn.remote}${conn.peerId ? ` peer ${conn.peerId}` : ""}: ${why}`)
    this.#drop(conn, why, code)
  }

  /** Close a connection and forget it at once. */
  #drop(conn: Conn<P>, why: string, code: number): void {
    safeClose(conn.ws, code, why)
    // Do not wait for the close handshake of a peer that may never answer.
    const t = setTimeout(() => conn.ws.terminate(), 2000)
    t.unref()
    this.#forget(conn)
  }

  #forget(conn: Conn<P>): void {
    if (conn.closed) return
    conn.closed = true
    clearTimeout(conn.helloTimer)
    this.#all.delete(conn)
    if (conn.repoId) this.#byRepoId.delete(conn.repoId)
    if (conn.peerId && this.#conns.get(conn.peerId) === conn) this.#conns.delete(conn.peerId)
    if (conn.repoId) {
      this.#log(`peer ${conn.peerId} disconnected`)
      this.emit("peer-disconnected", { peerId: conn.repoId })
    }
  }

  #ping(): void {
    for (const c of [...this.#all]) {
      if (!c.alive) {
        this.#log(`terminating unresponsive connection ${c.remote}${c.peerId ? ` peer ${c.peerId}` : ""}`)
        c.ws.terminate()
        this.#forget(c)
        continue
      }
      c.alive = false
      try {
        c.ws.ping()
      } catch {
        // closing
      }
    }
  }
}

function safeClose(ws: WebSocket, code: number, reason: string): void {
  try {
    // close reasons are limited to 123 bytes
    ws.close(code, Buffer.from(reason).subarray(0, 120).toString())
  } catch {
    try {
      ws.terminate()
    } catch {
      // already gone
    }
  }
}
