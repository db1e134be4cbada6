/**
 * The sync server's small HTTP API as a client sees it (plans list, durable heads, the change
 * exchange), and the errors of a sync. No automerge-repo here: a one-shot sync by exchange (bulk.ts)
 * never loads it.
 */
import http from "node:http"
import { createRequire } from "node:module"
import { ConcordError } from "../../doc/errors.js"
import type { ServerPlanInfo } from "./server.js"
import { parseServerUrl } from "./url.js"

/** node:https (with node:tls) is loaded for an https:// server only: a sync over http loads neither. */
let https: typeof import("node:https") | undefined
const client = (u: URL): typeof http => (u.protocol === "https:" ? (https ??= createRequire(import.meta.url)("node:https")) : http) as typeof http

/** Sync failed: server unreachable, token or change refused, or no convergence in time. Exit code 1. */
export class SyncError extends ConcordError {
  readonly kind: "unreachable" | "unauthorized" | "refused" | "timeout" | "protocol"
  constructor(kind: SyncError["kind"], message: string) {
    super(message, 1)
    this.name = "SyncError"
    this.kind = kind
  }
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
    const [p, query] = suffix.split("?")
    u.pathname = `${u.pathname.replace(/\/+$/, "")}${p}`
    if (query !== undefined) u.search = query
    return u
  }

  request<T>(method: "GET" | "POST", suffix: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
    const u = this.#url(suffix)
    const lib = client(u)
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
   * such endpoint (HTTP 404: a concord server from before it) or the request is over its size limit (413).
   */
  exchange(body: Buffer, timeoutMs = 120_000): Promise<Buffer | null> {
    const u = this.#url("/v1/exchange")
    const lib = client(u)
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
            // no such endpoint (an older concord), or a request over the server's size limit: the caller
            // syncs through the sync protocol, which sends smaller messages
            if (status === 404 || status === 413) return resolve(null)
            let err = buf.toString("utf8").trim().slice(0, 300)
            try {
              err = (JSON.parse(err) as { error?: string }).error ?? err
            } catch {
              // not JSON: the text itself
            }
            if (status === 401)
              return reject(new SyncError("unauthorized", `the server at ${this.base.host} refused the token (HTTP 401: ${err || "unauthorized"})`))
            if (status === 403) return reject(new SyncError("refused", `the server at ${this.base.host} refused: ${err} (HTTP ${status})`))
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

  /** The plans with what a sync needs only (no status or checkpoint; an older server sends them anyway). */
  syncPlans(): Promise<PlansResponse> {
    return this.request<PlansResponse>("GET", "/v1/plans?fields=sync")
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
