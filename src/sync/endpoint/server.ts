/**
 * The endpoint's server side (see protocol.ts): listens on the plan's socket, hands each request to a
 * handler, and answers once the handler's effect is durable. It knows nothing of plans: `concord run`
 * gives it the handlers (src/ops/endpoint.ts, the same plan operations every front end uses).
 *
 * Invariants:
 *  - an answer is written only after the handler resolved (its writes are durable), so "acknowledged"
 *    always means "in the store";
 *  - close() stops accepting, lets the requests under way finish and be answered, then removes the
 *    socket and the info file (only if it still names this process);
 *  - a malformed or oversized message is answered with an error (if it had an id) and its connection is
 *    closed; it never takes the server down.
 */
import { promises as fsp } from "node:fs"
import net from "node:net"
import path from "node:path"
import { ensureDirIn, writeFileAtomic } from "../storage/atomic.js"
import {
  CLOSING,
  type EndpointError,
  type EndpointInfo,
  type EndpointOp,
  type EndpointResponse,
  infoFile,
  LineSplitter,
  PROTOCOL_VERSION,
  socketPath,
} from "./protocol.js"

export type EndpointHandlers = Partial<Record<EndpointOp, (input: unknown, by: string) => Promise<unknown>>>

export interface EndpointServerOptions {
  storeDir: string
  planId: string
  host: string
  handlers: EndpointHandlers
  onWarning?: (msg: string) => void
}

export interface EndpointServer {
  readonly socket: string
  close(): Promise<void>
}

function errorOf(e: unknown): EndpointError {
  const err = e as { message?: unknown; code?: unknown; exitCode?: unknown }
  return {
    message: typeof err?.message === "string" ? err.message : String(e),
    code: typeof err?.code === "string" ? err.code : "failed",
    exitCode: typeof err?.exitCode === "number" ? err.exitCode : 1,
  }
}

export async function startEndpoint(opts: EndpointServerOptions): Promise<EndpointServer> {
  const warn = opts.onWarning ?? (() => {})
  const sock = socketPath(opts.storeDir, opts.planId)
  const info = infoFile(opts.storeDir, opts.planId)
  await ensureDirIn(path.resolve(opts.storeDir), path.dirname(info), 0o700)
  if (process.platform !== "win32") await removeStaleSocket(sock)

  const conns = new Set<net.Socket>()
  let inFlight = 0
  let idle: (() => void) | undefined
  let closing: Promise<void> | undefined
  const server = net.createServer({ allowHalfOpen: false }, conn => {
    conns.add(conn)
    conn.setEncoding("utf8")
    const lines = new LineSplitter()
    const send = (r: EndpointResponse) => {
      if (!conn.destroyed) conn.write(`${JSON.stringify(r)}\n`)
    }
    conn.on("data", (chunk: string) => {
      let got: string[]
      try {
        got = lines.push(chunk)
      } catch (e) {
        send({ id: 0, ok: false, error: { message: (e as Error).message, code: "too_large", exitCode: 2 } })
        conn.end()
        return
      }
      for (const line of got) {
        let req: { v?: unknown; id?: unknown; op?: unknown; by?: unknown; input?: unknown }
        try {
          req = JSON.parse(line)
        } catch {
          send({ id: 0, ok: false, error: { message: "not a JSON message", code: "bad_request", exitCode: 2 } })
          conn.end()
          return
        }
        const id = typeof req?.id === "number" && Number.isSafeInteger(req.id) ? req.id : 0
        const handler = typeof req?.op === "string" && Object.hasOwn(opts.handlers, req.op) ? opts.handlers[req.op as EndpointOp] : undefined
        if (req?.v !== PROTOCOL_VERSION || typeof req.by !== "string" || req.by.length === 0 || req.by.length > 256 || id === 0) {
          send({ id, ok: false, error: { message: `not a concord endpoint request (protocol ${PROTOCOL_VERSION})`, code: "bad_request", exitCode: 2 } })
          continue
        }
        if (!handler) {
          send({ id, ok: false, error: { message: `unknown operation ${JSON.stringify(req.op)}`, code: "bad_request", exitCode: 2 } })
          continue
        }
        if (closing) {
          // not taken (its sender goes to the store: nothing was applied here that it might write twice);
          // the requests taken before are still answered on this connection
          send({ id, ok: false, error: { message: "the endpoint is stopping", code: CLOSING, exitCode: 1 } })
          continue
        }
        inFlight++
        handler(req.input, req.by)
          .then(
            result => send({ id, ok: true, result }),
            e => send({ id, ok: false, error: errorOf(e) })
          )
          .finally(() => {
            inFlight--
            if (inFlight === 0) idle?.()
          })
      }
    })
    conn.on("error", () => {})
    conn.on("close", () => conns.delete(conn))
  })
  server.on("error", e => warn(`endpoint: ${(e as Error).message}`))
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e)
    server.once("error", onError)
    server.listen(sock, () => {
      server.off("error", onError)
      resolve()
    })
  })
  if (process.platform !== "win32") await fsp.chmod(sock, 0o600).catch(() => {})
  const record: EndpointInfo = { v: PROTOCOL_VERSION, plan: opts.planId, socket: sock, pid: process.pid, host: opts.host, startedAt: Date.now() }
  await writeFileAtomic(info, `${JSON.stringify(record)}\n`, { durable: false, root: path.resolve(opts.storeDir) })

  return {
    socket: sock,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>(resolve => server.close(() => resolve()))
        if (inFlight > 0) await new Promise<void>(resolve => (idle = resolve))
        for (const c of conns) c.end()
        // connections that do not end by themselves within a moment are cut
        const t = setTimeout(() => conns.forEach(c => c.destroy()), 1000)
        await stopped
        clearTimeout(t)
        try {
          const cur = JSON.parse(await fsp.readFile(info, "utf8")) as EndpointInfo
          if (cur.pid === process.pid) await fsp.rm(info, { force: true })
        } catch {
          // gone already
        }
      })()
      return closing
    },
  }
}

/** A socket file nobody listens on (its process died) is removed; a live one is refused. */
async function removeStaleSocket(sock: string): Promise<void> {
  try {
    await fsp.lstat(sock)
  } catch {
    return
  }
  const live = await new Promise<boolean>(resolve => {
    const c = net.connect(sock)
    c.once("connect", () => {
      c.destroy()
      resolve(true)
    })
    c.once("error", () => resolve(false))
  })
  if (live) throw new Error(`another process is serving ${sock}`)
  await fsp.rm(sock, { force: true })
}
