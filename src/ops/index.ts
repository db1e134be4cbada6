/**
 * Plan operations, written once over a PlanBackend (local store or sync server). Front ends (CLI, MCP
 * server, dashboard) call these and only render their results.
 */
export type { DocChange, PlanBackend, PlanInfo, PlanUpdate } from "./backend.js"
export { LocalBackend } from "./local.js"
export { RemoteBackend } from "./remote.js"
export { type ResolvedPlan, resolvePlan } from "./resolve.js"
export { type ReportInput, type ReportResult, report } from "./report.js"
export { type ApproveInput, type ApproveResult, approve } from "./approve.js"
export { type CancelInput, type CancelResult, cancel, type JobProcess, type ProcessStopper } from "./cancel.js"
export { status, statusOf, type StatusResult, watchStatus } from "./status.js"
export { changeEntries, history, type HistoryEntry, type HistoryInput, type HistoryResult } from "./history.js"
export { createPlan, type CreatedPlan, listPlans, type PlanRow } from "./plans.js"
export { type AtInput, type AtResult, planAt, planAtDocs } from "./at.js"
export { type KillInput, type KillResult, kill } from "./kill.js"
export { DEFAULT_TAIL_LINES, type FollowOptions, followLog, locateLog, type LogInput, type LogTail, MAX_TAIL_LINES, tailLog } from "./logs.js"
export {
  cleanup,
  type CleanupInput,
  type CleanupResult,
  DEFAULT_DIFF_BYTES,
  diff,
  type DiffInput,
  type DiffResult,
  MAX_DIFF_BYTES,
  type MergeInput,
  type MergeStatusResult,
  type PrInput,
  type PrResult,
  pullRequest,
  requestMerge,
  type SyncInput,
  type SyncResult,
  syncJob,
} from "./git.js"
