/**
 * The endpoint's client side (see protocol.ts): find the endpoint of a plan, send one request, get its
 * answer. No Automerge here, so a one-shot `concord report` that finds an endpoint never loads it.
 *
 * The caller learns whether the request may have been applied: `unavailable` with `sent: false` means
 * certainly not (no endpoint, a stale info file, a refused connection); `sent: true` means the
 * connection broke after the request went out, so it may have been applied: send it again elsewhere
 * with the same report id (the store keeps a report id once).
 */
import { readFileSync } from "node:fs"
import net from "node:net"
import { type EndpointInfo, type EndpointOp, type EndpointResponse, infoFile, LineSplitter, PROTOCOL_VERSION } from "./protocol.js"

export type CallOutcome = { kind: "answered"; response: EndpointResponse } | { kind: "unavailable"; sent: boolean; why: string }

export interface CallOptions {
  /** Give up connecting after this long (default 2 s): the store path is always there. */
  connectTimeoutMs?: number
  /** Give up waiting for the answer after this long (default 120 s); the request may then have been applied. */
  answerTimeoutMs?: number
}

/** The endpoint's info for a plan on this machine, if one is recorded. */
export function findEndpoint(storeDir: string, planId: string, host: string): EndpointInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(infoFile(storeDir, planId), "utf8")) as EndpointInfo
    if (info?.v !== PROTOCOL_VERSION || info.plan !== planId || typeof info.socket !== "string" || info.host !== host) return undefined
    return info
  } catch {
    return undefined
  }
}

let nextId = 1

export function callEndpoint(info: EndpointInfo, op: EndpointOp, by: string, input: unknown, opts: CallOptions = {}): Promise<CallOutcome> {
  const id = nextId++
  return new Promise<CallOutcome>(resolve => {
    let sent = false
    let done = false
    const finish = (o: CallOutcome) => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      resolve(o)
    }
    const sock = net.connect(info.socket)
    let timer = setTimeout(
      () => finish({ kind: "unavailable", sent, why: "the endpoint did not accept the connection in time" }),
      opts.connectTimeoutMs ?? 2000
    )
    sock.setEncoding("utf8")
    sock.once("connect", () => {
      clearTimeout(timer)
      timer = setTimeout(() => finish({ kind: "unavailable", sent, why: "the endpoint did not answer in time" }), opts.answerTimeoutMs ?? 120_000)
      sent = true
      sock.write(`${JSON.stringify({ v: PROTOCOL_VERSION, id, op, by, input })}\n`)
    })
    const lines = new LineSplitter()
    sock.on("data", (chunk: string) => {
      let got: string[]
      try {
        got = lines.push(chunk)
      } catch {
        return finish({ kind: "unavailable", sent, why: "the endpoint sent an oversized answer" })
      }
      for (const line of got) {
        try {
          const r = JSON.parse(line) as EndpointResponse
          if (r.id === id) return finish({ kind: "answered", response: r })
        } catch {
          return finish({ kind: "unavailable", sent, why: "the endpoint sent a malformed answer" })
        }
      }
    })
    sock.once("error", e => finish({ kind: "unavailable", sent, why: `the endpoint is unreachable (${(e as NodeJS.ErrnoException).code ?? e.message})` }))
    sock.once("close", () => finish({ kind: "unavailable", sent, why: "the endpoint closed the connection before answering" }))
  })
}
