/**
 * concord's library API: the same operations the CLI uses, typed.
 *
 *   import { PlanStore, parsePlanSpec, readPlan, setJobStatus, summarize } from "concord"
 */
export * from "./doc/states.js"
export * from "./doc/errors.js"
export * from "./doc/actor.js"
export * from "./doc/ids.js"
export * from "./doc/model.js"
export * from "./doc/plan.js"
export * from "./doc/reports.js"
export * from "./doc/summary.js"
export * from "./doc/graph.js"
export { parsePlanSpec, validatePlanSpec, findCycle, topoOrder, SpecError } from "./doc/spec.js"
export type { PlanSpec, JobSpec, PlanMode } from "./doc/spec.js"
export { PlanStore, type PlanIndexEntry } from "./sync/store/PlanStore.js"
export { DocStore, StoreError } from "./sync/store/DocStore.js"
export { ConcordStorageAdapter } from "./sync/storage/ConcordStorageAdapter.js"
export { locateStore } from "./sync/store/locate.js"
