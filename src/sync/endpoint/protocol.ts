/**
 * The local endpoint of `concord run`: while an orchestrator runs a plan, it serves plan operations for
 * that plan over a Unix socket (a named pipe on Windows), holding the plan and its report logs in memory.
 * A report then costs a connect and one durable group commit instead of a process that loads Automerge
 * and the documents. Nothing depends on it for correctness: with no endpoint (or a dead one), every
 * client writes to the store directly, as before.
 *
 * Where it is: `<store>/endpoints/<planId>.json` names the socket and the process serving it. The socket
 * lives next to it when the path fits the platform's limit (about 100 bytes), else in the temp directory
 * under a name derived from the store and plan.
 *
 * Wire format: one JSON object per line each way. A request `{"v":1,"id":N,"op":"report","by":ACTOR,
 * "input":{...}}` gets `{"id":N,"ok":true,"result":{...}}` or `{"id":N,"ok":false,"error":{"message",
 * "code","exitCode"}}`, once its effect is durable. A connection carries any number of requests; answers
 * may come out of order (match them by id). A line over MAX_LINE_BYTES closes the connection. An
 * endpoint that is stopping answers the requests it took and refuses new ones with the error code
 * CLOSING: nothing of theirs was applied.
 *
 * This module has no Automerge in it: a one-shot `concord report` imports only this and client.ts.
 */
import { createHash } from "node:crypto"
import os from "node:os"
import path from "node:path"

export const PROTOCOL_VERSION = 1
/** The error code of a request an endpoint did not take because it is stopping: send it elsewhere. */
export const CLOSING = "endpoint_closing"
const MAX_LINE_BYTES = 1024 * 1024

export type EndpointOp = "report" | "ping"

/** A request line of the protocol. @public (the wire format, documented here) */
export interface EndpointRequest {
  v: number
  id: number
  op: EndpointOp
  /** Actor label of the sender (`job:api#2@host:pid`): the changes made for it carry it. */
  by: string
  input?: unknown
}

export interface EndpointError {
  message: string
  code: string
  exitCode: number
}

export type EndpointResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: EndpointError }

/** What `<store>/endpoints/<planId>.json` holds. */
export interface EndpointInfo {
  v: number
  plan: string
  socket: string
  pid: number
  host: string
  startedAt: number
}

export function infoFile(storeDir: string, planId: string): string {
  return path.join(storeDir, "endpoints", `${planId}.json`)
}

/** Where the endpoint of a plan listens (a path short enough for a Unix socket, or a Windows pipe). */
export function socketPath(storeDir: string, planId: string): string {
  const tag = createHash("sha256")
    .update(`${path.resolve(storeDir)}\0${planId}`)
    .digest("hex")
    .slice(0, 20)
  if (process.platform === "win32") return `\\\\.\\pipe\\concord-${tag}`
  const near = path.join(storeDir, "endpoints", `${planId.slice(0, 12)}.sock`)
  // sun_path is 108 bytes on Linux, 104 on macOS; keep a margin
  if (Buffer.byteLength(near) <= 100) return near
  return path.join(os.tmpdir(), `concord-${tag}.sock`)
}

/** Splits a byte stream into lines; throws on a line over MAX_LINE_BYTES. */
export class LineSplitter {
  #buf = ""
  push(chunk: string): string[] {
    this.#buf += chunk
    const lines = this.#buf.split("\n")
    this.#buf = lines.pop() ?? ""
    if (Buffer.byteLength(this.#buf) > MAX_LINE_BYTES) throw new Error(`a message over ${MAX_LINE_BYTES} bytes`)
    return lines.filter(l => l.length > 0)
  }
}
