/**
 * The endpoint's client side (see protocol.ts): find the endpoint of a plan, send one request, get its
 * answer. No Automerge here, so a one-shot `concord report` that finds an endpoint never loads it.
 *
 * The caller learns whether the request may have been applied: `unavailable` with `sent: false` means
 * certainly not (no endpoint, a stale info file, a refused connection); `sent: true` means the
 * connection broke after the request went out, so it may have been applied: send it again elsewhere
 * with the same report id (the store keeps a report id once).
 */
import { existsSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import type { Socket } from "node:net"
import { CLOSING, type EndpointInfo, type EndpointOp, type EndpointResponse, infoFile, LineSplitter, PROTOCOL_VERSION } from "./protocol.js"

export type CallOutcome = { kind: "answered"; response: EndpointResponse } | { kind: "unavailable"; sent: boolean; why: string }

export interface CallOptions {
  /** Give up connecting after this long (default 2 s): the store path is always there. */
  connectTimeoutMs?: number
  /** Give up waiting for the answer after this long (default 120 s); the request may then have been applied. */
  answerTimeoutMs?: number
}

/** The endpoint's info for a plan on this machine, if one is recorded. */
export function findEndpoint(storeDir: string, planId: string, host: string): EndpointInfo | undefined {
  // An open connection to the endpoint last found here means it is still the one serving the plan (a
  // new one would listen on the same socket, so the old connection would have closed).
  const known = lastFound.get(infoFile(storeDir, planId))
  if (known && known.host === host && pool.get(known.socket)?.closed === false) return known
  // no endpoint, the usual case for a sender with no orchestrator running: asked without an exception
  // (a failed read builds one: it costs more than the look)
  if (!existsSync(infoFile(storeDir, planId))) return undefined
  try {
    const info = JSON.parse(readFileSync(infoFile(storeDir, planId), "utf8")) as EndpointInfo
    if (info?.v !== PROTOCOL_VERSION || info.plan !== planId || typeof info.socket !== "string" || info.host !== host) return undefined
    lastFound.set(infoFile(storeDir, planId), info)
    return info
  } catch {
    return undefined
  }
}

let nextId = 1
/**
 * node:net, loaded at the first connection: a sender that finds no endpoint (a one-shot `concord report`
 * with no orchestrator running) never loads it.
 */
let net: typeof import("node:net") | undefined
const lastFound = new Map<string, EndpointInfo>()

interface Pending {
  id: number
  /** the request's line, until it is written */
  line?: string
  sent: boolean
  resolve(o: CallOutcome): void
  timer?: ReturnType<typeof setTimeout>
}

/**
 * One connection per endpoint socket, kept open between requests (a long-lived sender, such as `concord
 * mcp` or a library user, pays the connect once) and carrying any number of requests at a time. It does
 * not keep the process alive while idle. When it breaks, every request on it learns whether it was sent.
 */
class Connection {
  readonly #pending = new Map<number, Pending>()
  readonly #sock: Socket
  readonly #lines = new LineSplitter()
  #connected = false
  closed = false

  constructor(
    readonly path: string,
    private readonly onClosed: (c: Connection) => void
  ) {
    net ??= createRequire(import.meta.url)("node:net") as typeof import("node:net")
    this.#sock = net.connect(path)
    this.#sock.setEncoding("utf8")
    this.#sock.once("connect", () => {
      this.#connected = true
      for (const p of this.#pending.values()) this.#send(p)
    })
    this.#sock.on("data", (chunk: string) => this.#onData(chunk))
    this.#sock.once("error", e => this.fail(`the endpoint is unreachable (${(e as NodeJS.ErrnoException).code ?? e.message})`))
    this.#sock.once("close", () => this.fail("the endpoint closed the connection before answering"))
  }

  call(line: string, id: number, opts: CallOptions): Promise<CallOutcome> {
    return new Promise<CallOutcome>(resolve => {
      if (this.closed) return resolve({ kind: "unavailable", sent: false, why: "the endpoint's connection is closed" })
      const p: Pending = { id, line, sent: false, resolve }
      this.#pending.set(id, p)
      this.#sock.ref()
      if (this.#connected) this.#send(p)
      else p.timer = setTimeout(() => this.fail("the endpoint did not accept the connection in time"), opts.connectTimeoutMs ?? 2000)
      // the answer's deadline counts from the call (a request queued behind a slow connect included)
      const answerTimer = setTimeout(() => {
        // a hung endpoint: give up on this connection (its other requests go elsewhere too)
        this.fail("the endpoint did not answer in time")
      }, opts.answerTimeoutMs ?? 120_000)
      const done = p.resolve
      p.resolve = o => {
        clearTimeout(answerTimer)
        done(o)
      }
    })
  }

  #send(p: Pending): void {
    clearTimeout(p.timer)
    if (p.line === undefined || p.sent) return
    p.sent = true
    this.#sock.write(p.line)
    p.line = undefined
  }

  #finish(p: Pending, o: CallOutcome): void {
    clearTimeout(p.timer)
    this.#pending.delete(p.id)
    if (this.#pending.size === 0 && !this.closed) this.#sock.unref()
    p.resolve(o)
  }

  #onData(chunk: string): void {
    let got: string[]
    try {
      got = this.#lines.push(chunk)
    } catch {
      return this.fail("the endpoint sent an oversized answer")
    }
    for (const line of got) {
      let r: EndpointResponse
      try {
        r = JSON.parse(line) as EndpointResponse
      } catch {
        return this.fail("the endpoint sent a malformed answer")
      }
      const p = this.#pending.get(r?.id)
      if (!p) continue
      if (!r.ok && r.error?.code === CLOSING) this.#finish(p, { kind: "unavailable", sent: false, why: "the endpoint is stopping" })
      else this.#finish(p, { kind: "answered", response: r })
    }
  }

  /** The connection is unusable: every request still on it is unavailable (sent or not, as it was). */
  fail(why: string): void {
    if (!this.closed) {
      this.closed = true
      this.onClosed(this)
      this.#sock.destroy()
    }
    for (const p of [...this.#pending.values()]) this.#finish(p, { kind: "unavailable", sent: p.sent, why })
  }
}

const pool = new Map<string, Connection>()

export function callEndpoint(info: EndpointInfo, op: EndpointOp, by: string, input: unknown, opts: CallOptions = {}): Promise<CallOutcome> {
  const id = nextId++
  let conn = pool.get(info.socket)
  if (!conn || conn.closed) {
    conn = new Connection(info.socket, c => {
      if (pool.get(c.path) === c) pool.delete(c.path)
    })
    pool.set(info.socket, conn)
  }
  return conn.call(`${JSON.stringify({ v: PROTOCOL_VERSION, id, op, by, input })}\n`, id, opts)
}
