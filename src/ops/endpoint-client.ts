/**
 * The sending half of src/ops/endpoint.ts, kept apart because it must stay light: a one-shot `concord
 * report` (src/cli/fast.ts) uses it without loading Automerge. It only sends; the rule that decides what
 * a report does runs in the endpoint (ops/report.ts over the orchestrator's live store).
 */
import { randomBytes } from "node:crypto"
import { ConcordError } from "../doc/errors.js"
import { hostName } from "../lib/host.js"
import { callEndpoint, type CallOptions, findEndpoint } from "../sync/endpoint/client.js"
import type { ReportInput, ReportResult } from "./report.js"

export type Via = "endpoint" | "store" | "server"
export type RoutedReport = ReportResult & { via: Via }

/**
 * A fresh report id (ReportRecord.rid): this process's random part (72 bits, drawn once) and a counter,
 * unique without a random draw per report.
 */
let ridPrefix: string | undefined
let ridCount = 0
export function newReportId(): string {
  ridPrefix ??= randomBytes(9).toString("base64url")
  return `${ridPrefix}${(++ridCount).toString(36)}`
}

/**
 * Try the endpoint of the plan `planId` on this machine. `undefined` when there is none or it could not
 * take the report (then `input.rid` is set if it may have been applied, so the caller's store write is
 * deduplicated); a refusal by the endpoint is thrown as the same error the store path would throw.
 */
export async function reportViaEndpoint(
  storeDir: string,
  planId: string,
  input: ReportInput,
  by: string,
  opts: CallOptions = {}
): Promise<RoutedReport | undefined> {
  const info = findEndpoint(storeDir, planId, hostName())
  if (!info) return undefined
  const generated = input.rid === undefined
  input.rid ??= newReportId()
  const { planRef: _ignored, ...fields } = input
  const out = await callEndpoint(info, "report", by, fields, opts)
  if (out.kind === "unavailable") {
    if (!out.sent && generated) delete input.rid
    return undefined
  }
  const r = out.response
  if (!r.ok) {
    throw new ConcordError(r.error.message, r.error.exitCode, r.error.code)
  }
  return { ...(r.result as ReportResult), via: "endpoint" }
}
