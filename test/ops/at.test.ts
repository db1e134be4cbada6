/**
 * Time travel (src/ops/at.ts): the plan and its report logs as they were at a past change, by change
 * hash, by time and by heads; concurrent replicas; bad points refused.
 */
import * as A from "@automerge/automerge"
import { describe, expect, it } from "vitest"
import { cancelPlan, createPlan, raiseCheckpoint, setJobStatus, type PlanDocument } from "../../src/doc/plan.js"
import { appendReport, reportsGenesis, type ReportsDocument } from "../../src/doc/reports.js"
import { planAtDocs } from "../../src/ops/at.js"
import { changeEntries } from "../../src/ops/history.js"
import { ctx, fork, spec } from "../doc/helpers.js"

const ID = "2xTestPlanIdForTimeTravel0001" as never

function scenario() {
  let doc: PlanDocument = createPlan(spec([{ name: "a" }, { name: "b", dependsOn: ["a"] }]), { baseDir: "/" }, ctx("user@h"))
  doc = setJobStatus(doc, "a", "running", {}, ctx("orch@h:1"))
  let log: ReportsDocument = reportsGenesis(ID, "a")
  log = appendReport(log, { status: "progress", message: "half", progress: 50, attempt: 1 }, ctx("job:a#1@h:2"))
  doc = setJobStatus(doc, "a", "failed", {}, ctx("orch@h:1"))
  doc = raiseCheckpoint(doc, "on_error", { jobName: "a" }, ctx("orch@h:1"))
  log = appendReport(log, { status: "failed", message: "boom", attempt: 1 }, ctx("job:a#1@h:2"))
  return { doc, logs: new Map([["a", log]]) }
}

describe("planAt", () => {
  it("shows the plan after any change, in history order, with the report logs of that moment", () => {
    const { doc, logs } = scenario()
    const last = planAtDocs(ID, "p", doc, logs, { at: Number.MAX_SAFE_INTEGER })
    expect(last.summary.status).toBe("paused")
    expect(last.summary.jobs[0].status).toBe("failed")
    expect(last.included).toBe(last.total)

    const first = planAtDocs(ID, "p", doc, logs, { change: changeEntries(doc, "plan")[0].hash })
    expect(first.included).toBe(1)
    expect(first.summary.status).toBe("pending")
    expect(first.summary.jobs.map(j => j.status)).toEqual(["queued", "queued"])
    expect(first.summary.jobs[0].lastReport).toBe(null)
    expect(first.entry?.by).toBe("user@h")

    // after the progress report, before the failure: running at 50% with that report
    const progress = changeEntries(logs.get("a")!, "reports:a").find(e => e.did.includes("progress"))!
    const mid = planAtDocs(ID, "p", doc, logs, { change: progress.hash.slice(0, 12) })
    expect(mid.summary.jobs[0].status).toBe("running")
    expect(mid.summary.jobs[0].progress).toBe(50)
    expect(mid.summary.jobs[0].lastReport?.message).toBe("half")
    expect(mid.summary.checkpoint).toBe(null)
    expect(mid.at).toBe(progress.at)

    // by heads of the plan document: the reports up to that change's time come along
    const heads = A.getHeads(A.view(doc, [changeEntries(doc, "plan")[1].hash]))
    const byHeads = planAtDocs(ID, "p", doc, logs, { heads })
    expect(byHeads.summary.jobs[0].status).toBe("running")
    expect(byHeads.summary.jobs[0].lastReport).toBe(null)
    expect(byHeads.heads).toEqual(heads)
  })

  it("by time: every change at or before it; before the plan existed is refused", () => {
    const { doc, logs } = scenario()
    const entries = changeEntries(doc, "plan")
    const r = planAtDocs(ID, "p", doc, logs, { at: entries[2].at })
    expect(r.summary.jobs[0].status).toBe("failed")
    expect(r.summary.checkpoint).toBe(null)
    expect(() => planAtDocs(ID, "p", doc, logs, { at: entries[0].at - 1 })).toThrow(/did not exist yet/)
  })

  it("concurrent replicas: a point includes one replica's change without the other's, and never a change without its dependencies", () => {
    const { doc } = scenario()
    const other = fork(doc)
    const canceled = cancelPlan(other, ctx("bob@h2"))
    const both = A.merge(A.clone(doc), canceled)
    const entries = changeEntries(both, "plan").sort((a, b) => a.at - b.at)
    const cancelEntry = entries.find(e => e.by === "bob@h2")!
    const r = planAtDocs(ID, "p", both, new Map(), { change: cancelEntry.hash })
    expect(r.summary.status).toBe("canceled")
    const before = planAtDocs(ID, "p", both, new Map(), { change: entries[entries.indexOf(cancelEntry) - 1].hash })
    expect(before.summary.status).toBe("paused")
  })

  it("refuses unknown changes, ambiguous or missing points", () => {
    const { doc, logs } = scenario()
    expect(() => planAtDocs(ID, "p", doc, logs, { change: "ffff" })).toThrow(/no change ffff/)
    expect(() => planAtDocs(ID, "p", doc, logs, {})).toThrow(/exactly one point/)
    expect(() => planAtDocs(ID, "p", doc, logs, { at: 1, change: "a" })).toThrow(/exactly one point/)
    expect(() => planAtDocs(ID, "p", doc, logs, { heads: ["00".repeat(32)] })).toThrow(/has no change/)
  })
})
