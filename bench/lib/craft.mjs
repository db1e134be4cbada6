// Builds a job's report log fast: each report is the same Automerge change that
// PlanStore.appendReport makes (same fields, values and change message), encoded directly with
// Automerge.encodeChange instead of through Automerge.change, which would cost O(log size) per report.
// Used where a workload needs many reports quickly (scale, the sync reference); the scale workload
// checks the result against the real path (its "fidelity" numbers).
import { randomBytes } from "node:crypto"

/**
 * A report log of `job` in plan `plan`, starting from concord's shared genesis change.
 *   A: the @automerge/automerge module; c: concord's library (dist/src/index.js)
 *   actor: hex actor id for every change (one writer process), or undefined for a new actor per
 *          report (as every `concord report` process has)
 */
export function reportLog(A, c, plan, job, { actor } = {}) {
  const doc = A.clone(c.reportsGenesis(plan, job))
  const [genesis] = A.getAllChanges(doc).map(A.decodeChange)
  const idx = genesis.ops.findIndex(o => o.action === "makeList" && o.key === "reports")
  if (idx < 0) throw new Error("report log genesis has no reports list: bench/lib/craft.mjs no longer matches src/doc/reports.ts")
  const st = {
    doc,
    list: `${genesis.startOp + idx}@${genesis.actor}`,
    prevElem: "_head",
    maxOp: genesis.startOp + genesis.ops.length - 1,
    deps: [genesis.hash],
    seq: 0,
    count: 0,
  }
  return {
    get doc() {
      return st.doc
    },
    get count() {
      return st.count
    },
    /** Encode one report as a change (not yet applied). */
    change(f) {
      const who = actor ?? randomBytes(16).toString("hex")
      const seq = actor ? ++st.seq : 1
      const at = f.at ?? Date.now()
      const startOp = st.maxOp + 1
      const obj = `${startOp}@${who}`
      const progress = f.progress ?? null
      const ops = [
        { action: "makeMap", obj: st.list, elemId: st.prevElem, insert: true, pred: [] },
        { action: "set", obj, key: "at", datatype: "int", value: at, pred: [] },
        { action: "set", obj, key: "attempt", datatype: "int", value: f.attempt ?? 1, pred: [] },
        { action: "set", obj, key: "by", value: f.by, pred: [] },
        { action: "set", obj, key: "message", value: f.message, pred: [] },
        progress === null
          ? { action: "set", obj, key: "progress", value: null, pred: [] }
          : { action: "set", obj, key: "progress", datatype: "int", value: progress, pred: [] },
        { action: "set", obj, key: "status", value: f.status, pred: [] },
      ]
      const pct = progress !== null ? ` ${progress}%` : ""
      const bytes = A.encodeChange({
        actor: who,
        seq,
        startOp,
        time: Math.floor(at / 1000),
        message: JSON.stringify({ by: f.by, at, did: `report ${f.status}${pct} for attempt ${f.attempt ?? 1}` }),
        deps: st.deps,
        ops,
      })
      st.deps = [A.decodeChange(bytes).hash]
      st.prevElem = obj
      st.maxOp = startOp + ops.length - 1
      st.count++
      return bytes
    },
    /** Encode and apply many reports at once. */
    append(fieldsList) {
      const changes = fieldsList.map(f => this.change(f))
      st.doc = A.applyChanges(st.doc, changes)[0]
      return st.doc
    },
  }
}
