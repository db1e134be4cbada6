/**
 * Plan operations through `concord run`'s local endpoint (src/sync/endpoint): what the endpoint answers,
 * and how a sender routes a report to it. The rule itself is still the one in report.ts: the endpoint
 * runs it over the orchestrator's in-memory (live) store, a sender with no endpoint runs it over its own.
 *
 * Routing never loses or doubles a report: with no endpoint, or one that refused the connection, the
 * report goes to the store; when the connection broke after the report was sent (the endpoint may have
 * stored it), it goes to the store with the same report id, which the store keeps once.
 */
import { InputError } from "../doc/errors.js"
import { parseDocRef } from "../doc/ids.js"
import { hostName } from "../lib/host.js"
import { type EndpointHandlers, startEndpoint } from "../sync/endpoint/server.js"
import { PlanStore } from "../sync/store/PlanStore.js"
import { LocalBackend } from "./local.js"
import type { PlanBackend } from "./backend.js"
import { type RoutedReport, reportViaEndpoint } from "./endpoint-client.js"
import { report, type ReportInput } from "./report.js"
import { resolvePlan } from "./resolve.js"
import type { WriteContext } from "../doc/actor.js"

/** A report's fields from an endpoint request, type-checked (the values are checked by report()). */
function reportInputOf(raw: unknown): Omit<ReportInput, "planRef"> {
  const o = raw as Record<string, unknown> | null
  if (!o || typeof o !== "object" || Array.isArray(o)) throw new InputError("invalid report request: expected an object")
  const str = (k: string, optional = true) => {
    const v = o[k]
    if (v === undefined && optional) return undefined
    if (typeof v !== "string") throw new InputError(`invalid report request: ${k} must be text`)
    return v
  }
  const num = (k: string) => {
    const v = o[k]
    if (v === undefined || v === null) return v as undefined | null
    if (typeof v !== "number") throw new InputError(`invalid report request: ${k} must be a number`)
    return v
  }
  const attempt = num("attempt")
  return {
    job: str("job", false)!,
    status: str("status", false)!,
    message: str("message"),
    progress: num("progress"),
    attempt: attempt ?? undefined,
    rid: str("rid"),
  }
}

/**
 * What `concord run` serves for its plan: report (and ping), over the orchestrator's live backend.
 * @public (also served by test/sync/endpoint/serve-fixture.mjs, which loads it from dist/)
 */
export function endpointHandlers(backend: PlanBackend, planId: string, opts: { onStatusChange?: () => void } = {}): EndpointHandlers {
  return {
    ping: async () => ({ plan: planId, pid: process.pid }),
    report: async (raw, by) => {
      const input = reportInputOf(raw)
      const r = await report(backend, { ...input, planRef: planId }, () => ({ by, now: Date.now() }))
      if (r.changed) opts.onStatusChange?.()
      return r
    },
  }
}

/**
 * The report operation as every front end calls it: through the plan's endpoint when `concord run` serves
 * one on this machine, else (or when it died) through the backend.
 */
export async function reportRouted(backend: PlanBackend, input: ReportInput, clock: () => WriteContext): Promise<RoutedReport> {
  if (backend.storeDir) {
    const ref = input.planRef
    let planId = ref ? parseDocRef(ref.trim()) : undefined
    if (!planId) planId = (await resolvePlan(backend, ref)).id
    const via = await reportViaEndpoint(backend.storeDir, planId, input, clock().by)
    if (via) return via
    return { ...(await report(backend, { ...input, planRef: planId }, clock)), via: "store" }
  }
  return { ...(await report(backend, input, clock)), via: "server" }
}

/**
 * Serve the plan's endpoint from this process (`concord run` does, while it holds the plan's lease): a
 * live store of its own (documents kept in memory, one actor, group commits: the reports for one log
 * in one change, the chunk files of all logs written in one turn made durable together) behind the socket.
 */
export async function serveEndpoint(
  storeDir: string,
  planId: string,
  opts: { onStatusChange?: () => void; onWarning?: (msg: string) => void } = {}
): Promise<{ socket: string; close(): Promise<void> }> {
  const backend = new LocalBackend(new PlanStore(storeDir, { live: true, groupWrites: true, onWarning: opts.onWarning }))
  const server = await startEndpoint({ storeDir, planId, host: hostName(), handlers: endpointHandlers(backend, planId, opts), onWarning: opts.onWarning })
  return {
    socket: server.socket,
    async close() {
      await server.close()
      await backend.close()
    },
  }
}
