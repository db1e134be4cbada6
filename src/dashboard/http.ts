/**
 * The dashboard's HTTP handler, shared by `concord dashboard` (local store) and `concord serve` (behind
 * its tokens). A thin adapter: every route calls one plan operation (src/ops) on the backend of the
 * request's session and sends its result as JSON; the page renders it. No plan rule lives here.
 *
 * Routes, under `/dashboard/` (relative URLs in the page, so a proxy may mount it under a prefix):
 *   GET  /dashboard/             the page (static files bundled by esbuild into dist/dashboard/)
 *   GET  api/session             who the token is, its role, whether it may act, the plans it sees
 *   GET  api/events?plan=REF     Server-Sent Events: a `status` event (ops.watchStatus's StatusResult)
 *                                at once and after every change any process or machine makes
 *   GET  api/history?plan=REF    ops.history
 *   GET  api/at?plan=REF&change=HASH | &at=MS   ops.planAt (time travel)
 *   GET  api/log?plan=REF&job=NAME   Server-Sent Events: the job's log tail, then appends
 *   POST api/approve {plan, checkpoint?, retry?, skip?}   ops.approve
 *   POST api/cancel  {plan}      ops.cancel
 * Every api/ route needs the session token (`Authorization: Bearer T`, or `?token=T` for EventSource,
 * which cannot set headers). POSTs need the header and a JSON body, so a form on another web site cannot
 * post to a dashboard on localhost.
 */
import { readBody } from "../lib/http.js"
import { randomBytes } from "node:crypto"
import { existsSync, promises as fsp } from "node:fs"
import type http from "node:http"
import path from "node:path"
import { fileURLToPath } from "node:url"
import type { WriteContext } from "../doc/actor.js"
import { ConcordError, InputError } from "../doc/errors.js"
import { approve } from "../ops/approve.js"
import { planAt } from "../ops/at.js"
import type { PlanBackend } from "../ops/backend.js"
import { cancel, type ProcessStopper } from "../ops/cancel.js"
import { history } from "../ops/history.js"
import { resolvePlan } from "../ops/resolve.js"
import { watchStatus } from "../ops/status.js"
import { streamJobLog } from "./logtail.js"

export interface DashboardSession {
  backend: PlanBackend
  /** The actor recorded on decisions made through this session. */
  who: string
  /** e.g. `admin`, `reader`, `local` */
  role: string
  /**
   * Whether the page shows working buttons. Only a hint for the page: every action is still judged by
   * the backend (a sync server's backend refuses what the role may not write).
   */
  canAct: boolean
}

export interface DashboardOptions {
  /** The session of a request's token, or null when the token is missing or wrong (HTTP 401). */
  session(token: string | undefined): Promise<DashboardSession | null>
  /** The plan shown when the page names none. */
  planRef?: string
  /** Stops job processes on this machine after a cancel (local store only). */
  stopper?: ProcessStopper
  log?: (line: string) => void
}

const BASE = "/dashboard"
const STATIC: Record<string, string> = {
  "": "index.html",
  "index.html": "index.html",
  "app.js": "app.js",
  "app.css": "app.css",
}
const TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8" }
const MAX_BODY = 64 * 1024

/** dist/dashboard/ (the bundled page), found walking up from this module (compiled or bundled). */
function pageDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const cand = path.join(dir, "dist", "dashboard")
    if (existsSync(path.join(cand, "app.js"))) return cand
    if (path.basename(dir) === "dist" && existsSync(path.join(dir, "dashboard", "app.js"))) return path.join(dir, "dashboard")
    const parent = path.dirname(dir)
    if (parent === dir) throw new ConcordError("the dashboard page is not built (run: npm run build)")
    dir = parent
  }
}

export class Dashboard {
  readonly #opts: DashboardOptions
  #dir?: string
  readonly #streams = new Set<() => void>()

  constructor(opts: DashboardOptions) {
    this.#opts = opts
  }

  /** Handle a request if it is the dashboard's; false otherwise (the caller handles it). */
  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
    let url: URL
    try {
      url = new URL(req.url ?? "/", "http://x")
    } catch {
      return false
    }
    const at = url.pathname.indexOf(BASE)
    if (at < 0 || (url.pathname.length > at + BASE.length && url.pathname[at + BASE.length] !== "/")) return false
    const rest = url.pathname.slice(at + BASE.length)
    if (rest === "") {
      res.writeHead(302, { location: `${url.pathname}/${url.search}` })
      res.end()
      return true
    }
    const sub = rest.slice(1)
    try {
      if (sub in STATIC) await this.#static(res, STATIC[sub])
      else if (sub.startsWith("api/")) await this.#api(req, res, url, sub.slice(4))
      else send(res, 404, { error: "not found" })
    } catch (e) {
      this.#opts.log?.(`dashboard ${req.method} ${sub}: ${(e as Error).message}`)
      if (!res.headersSent) send(res, 500, { error: "internal error" })
      else res.destroy()
    }
    return true
  }

  /** End every open event stream (server shutdown). */
  close(): void {
    for (const end of [...this.#streams]) end()
  }

  async #static(res: http.ServerResponse, file: string): Promise<void> {
    this.#dir ??= pageDir()
    const body = await fsp.readFile(path.join(this.#dir, file))
    res.writeHead(200, {
      "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
      "content-length": body.length,
      "cache-control": "no-cache",
      // everything is served from here; report text is only ever set as text
      "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    })
    res.end(body)
  }

  async #api(req: http.IncomingMessage, res: http.ServerResponse, url: URL, route: string): Promise<void> {
    const header = req.headers.authorization
    const fromHeader = typeof header === "string" && /^Bearer\s+/i.test(header) ? header.replace(/^Bearer\s+/i, "").trim() : undefined
    const token = fromHeader ?? url.searchParams.get("token") ?? undefined
    const session = await this.#opts.session(token)
    if (!session) return send(res, 401, { error: token ? "invalid token" : "missing token: open the dashboard with ?token=SECRET" })
    const planRef = url.searchParams.get("plan") || this.#opts.planRef || undefined
    try {
      if (req.method === "POST") {
        if (!fromHeader) return send(res, 403, { error: "actions need the token in the Authorization header" })
        if (!/^application\/json\b/i.test(req.headers["content-type"] ?? "")) return send(res, 415, { error: "send JSON" })
        const body = parseBody(await readBody(req, MAX_BODY))
        const ref = typeof body.plan === "string" && body.plan ? body.plan : planRef
        const clock = (): WriteContext => ({ by: session.who, now: Date.now() })
        if (route === "approve") {
          const r = await approve(session.backend, { planRef: ref, checkpoint: str(body.checkpoint), retry: str(body.retry), skip: str(body.skip) }, clock)
          this.#opts.log?.(`dashboard: ${session.who}: ${r.lines.join("; ")}`)
          return send(res, 200, r)
        }
        if (route === "cancel") {
          const r = await cancel(session.backend, { planRef: ref }, clock, this.#opts.stopper)
          this.#opts.log?.(`dashboard: ${session.who}: ${r.text}`)
          return send(res, 200, r)
        }
        return send(res, 404, { error: "not found" })
      }
      if (req.method !== "GET") return send(res, 405, { error: "use GET or POST" })
      switch (route) {
        case "session": {
          const plans = await session.backend.listPlans()
          return send(res, 200, { who: session.who, role: session.role, canAct: session.canAct, plan: planRef ?? null, plans })
        }
        case "events":
          return this.#events(req, res, session, planRef)
        case "history":
          return send(res, 200, await history(session.backend, { planRef }))
        case "at": {
          const change = url.searchParams.get("change") ?? undefined
          const atText = url.searchParams.get("at")
          const at = atText === null ? undefined : Number(atText)
          return send(res, 200, await planAt(session.backend, { planRef, change, at }))
        }
        case "log":
          return this.#log(req, res, session, planRef, url.searchParams.get("job") ?? "")
        default:
          return send(res, 404, { error: "not found" })
      }
    } catch (e) {
      if (e instanceof ConcordError) {
        const status = e.code === "forbidden" ? 403 : e.code === "not_found" ? 404 : e instanceof InputError ? 409 : 500
        return send(res, status, { error: e.message, code: e.code })
      }
      throw e
    }
  }

  /** Server push: one `status` event per change (coalesced by watchStatus), plus a tick for clocks. */
  async #events(req: http.IncomingMessage, res: http.ServerResponse, session: DashboardSession, planRef: string | undefined): Promise<void> {
    const plan = await resolvePlan(session.backend, planRef)
    const ac = new AbortController()
    const stream = openStream(req, res, () => ac.abort())
    const end = () => ac.abort()
    this.#streams.add(end)
    try {
      await watchStatus(session.backend, plan.id, s => stream.send("status", s), ac.signal, { tickMs: 5000 })
    } finally {
      this.#streams.delete(end)
      stream.end()
    }
  }

  /** Server push of a job's log (src/dashboard/logtail.ts over src/ops/logs.ts): `start`, then `log` events. */
  async #log(req: http.IncomingMessage, res: http.ServerResponse, session: DashboardSession, planRef: string | undefined, job: string): Promise<void> {
    const ac = new AbortController()
    let stream: ReturnType<typeof openStream> | undefined
    const end = () => ac.abort()
    this.#streams.add(end)
    req.once("close", end)
    try {
      await streamJobLog(
        session.backend,
        { planRef, job },
        {
          start: w => {
            stream = openStream(req, res, () => ac.abort())
            stream.send("start", { job, attempt: w.attempt })
          },
          text: text => stream?.send("log", { text }),
        },
        ac.signal
      )
    } catch (e) {
      if (stream || !(e instanceof ConcordError)) throw e
      // before the stream opened: no such job, no log (yet) on this machine, or a log outside the store
      const status = e.code === "log_outside_store" ? 403 : e instanceof InputError || e.code === "logs_not_here" ? 404 : 500
      return send(res, status, { error: e.message, code: e.code })
    } finally {
      this.#streams.delete(end)
      stream?.end()
    }
  }
}

/** A Server-Sent Events response; `onClose` runs when the client goes away. */
function openStream(req: http.IncomingMessage, res: http.ServerResponse, onClose: () => void) {
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no", connection: "keep-alive" })
  res.write(": concord dashboard\n\n")
  res.socket?.setNoDelay(true)
  const keepAlive = setInterval(() => res.write(": keep-alive\n\n"), 15_000)
  let open = true
  const close = () => {
    if (!open) return
    open = false
    clearInterval(keepAlive)
    onClose()
  }
  req.once("close", close)
  res.once("close", close)
  return {
    send(event: string, data: unknown) {
      if (open) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
    },
    end() {
      close()
      res.end()
    },
  }
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store" })
  res.end(text)
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined
}

function parseBody(text: string): Record<string, unknown> {
  let v: unknown
  try {
    v = text.trim() ? JSON.parse(text) : {}
  } catch (e) {
    throw new InputError(`bad request body: ${(e as Error).message}`)
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new InputError("bad request body: expected a JSON object")
  for (const k of ["plan", "checkpoint", "retry", "skip"]) {
    const x = (v as Record<string, unknown>)[k]
    if (x !== undefined && x !== null && typeof x !== "string") throw new InputError(`bad request body: "${k}" must be a string`)
  }
  return v as Record<string, unknown>
}

/** A random secret for a local dashboard's URL. */
export function newSecret(): string {
  return randomBytes(18).toString("base64url")
}
