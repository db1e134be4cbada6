/**
 * Same-key races, as a property: random concurrent histories on 2-5 replicas, with random merge orders.
 * Checks that all replicas converge, that a job attempt's resolved status never moves backwards (on any
 * replica, over time, and in the final merge), that the current attempt is the newest one created
 * anywhere, and that no report is lost.
 */
import * as A from "@automerge/automerge"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { InputError } from "../../src/doc/errors.js"
import { createPlan, type PlanDocument, readPlan, retryJob, setJobStatus, skipJob } from "../../src/doc/plan.js"
import { appendReport, readReports, reportsGenesis, type ReportsDocument } from "../../src/doc/reports.js"
import { JOB_RANK, JOB_STATUSES } from "../../src/doc/states.js"
import { ctx, fork, spec } from "./helpers.js"

const JOBS = ["A", "B"]

type Cmd =
  | { kind: "status"; r: number; job: string; to: (typeof JOB_STATUSES)[number]; old: boolean }
  | { kind: "retry" | "skip"; r: number; job: string }
  | { kind: "report"; r: number; job: string }
  | { kind: "merge"; r: number; from: number }

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("status" as const),
      r: fc.nat(4),
      job: fc.constantFrom(...JOBS),
      to: fc.constantFrom(...JOB_STATUSES),
      old: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom("retry" as const, "skip" as const), r: fc.nat(4), job: fc.constantFrom(...JOBS) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("report" as const), r: fc.nat(4), job: fc.constantFrom(...JOBS) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("merge" as const), r: fc.nat(4), from: fc.nat(4) }) }
)

interface Replica {
  plan: PlanDocument
  reports: Record<string, ReportsDocument>
  /** Highest rank this replica has seen per "job#attempt". */
  seen: Map<string, number>
}

function observe(rep: Replica, global: Map<string, number>) {
  for (const j of readPlan(rep.plan).jobs) {
    for (const a of j.attempts) {
      const key = `${j.name}#${a.n}`
      const rank = JOB_RANK[a.status]
      const before = rep.seen.get(key) ?? -1
      // Never backwards on this replica, whatever it merged or wrote.
      expect(rank, `${key} moved back from ${JOB_STATUSES[before]} to ${a.status}`).toBeGreaterThanOrEqual(before)
      rep.seen.set(key, rank)
      global.set(key, Math.max(global.get(key) ?? -1, rank))
    }
  }
}

describe("same-key races (property)", () => {
  it("replicas converge, statuses never move backwards, reports are never lost", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 5 }),
        fc.array(cmd, { minLength: 5, maxLength: 60 }),
        fc.array(fc.nat(), { minLength: 50, maxLength: 50 }),
        (n, cmds, shuffleSeed) => {
          const base = createPlan(spec(JOBS.map(name => ({ name }))), { baseDir: "." }, ctx())
          const planId = "plan"
          const replicas: Replica[] = Array.from({ length: n }, () => ({
            plan: fork(base),
            reports: Object.fromEntries(JOBS.map(j => [j, fork(reportsGenesis(planId, j))])),
            seen: new Map(),
          }))
          const globalSeen = new Map<string, number>()
          const sent: string[] = []
          const maxAttempt: Record<string, number> = { A: 1, B: 1 }
          cmds.forEach((c, i) => {
            const rep = replicas[c.r % n]
            try {
              if (c.kind === "status") {
                const job = readPlan(rep.plan).jobs.find(j => j.name === c.job)!
                const attempt = c.old ? 1 : job.attempt
                rep.plan = setJobStatus(rep.plan, c.job, c.to, { attempt }, ctx(`r${c.r % n}`))
              } else if (c.kind === "retry") {
                rep.plan = retryJob(rep.plan, c.job, ctx())
              } else if (c.kind === "skip") {
                rep.plan = skipJob(rep.plan, c.job, ctx())
              } else if (c.kind === "report") {
                const msg = `report-${i}`
                rep.reports[c.job] = appendReport(rep.reports[c.job], { status: "progress", message: msg, progress: i % 101, attempt: 1 }, ctx())
                sent.push(`${c.job}:${msg}`)
              } else if (c.kind === "merge") {
                const from = replicas[c.from % n]
                if (from !== rep) {
                  rep.plan = A.merge(rep.plan, from.plan)
                  for (const j of JOBS) rep.reports[j] = A.merge(rep.reports[j], from.reports[j])
                }
              }
            } catch (e) {
              // Rejected transitions are part of the game; anything else is a bug.
              if (!(e instanceof InputError)) throw e
            }
            for (const j of readPlan(rep.plan).jobs) maxAttempt[j.name] = Math.max(maxAttempt[j.name], j.attempt)
            observe(rep, globalSeen)
          })
          // Everyone merges everyone, in a random order: one full pass delivers every change everywhere.
          const pairs = replicas.flatMap((_, i) => replicas.map((_, j) => [i, j] as const)).filter(([i, j]) => i !== j)
          pairs.sort((p, q) => (shuffleSeed[(p[0] * 7 + p[1]) % 50] ?? 0) - (shuffleSeed[(q[0] * 7 + q[1]) % 50] ?? 0))
          for (const [i, j] of pairs) {
            replicas[i].plan = A.merge(replicas[i].plan, replicas[j].plan)
            for (const job of JOBS) replicas[i].reports[job] = A.merge(replicas[i].reports[job], replicas[j].reports[job])
          }
          for (const rep of replicas) observe(rep, globalSeen)
          const views = replicas.map(r => readPlan(r.plan))
          for (const v of views.slice(1)) expect(v).toEqual(views[0])
          for (const r of replicas.slice(1)) expect(A.getHeads(r.plan).sort()).toEqual(A.getHeads(replicas[0].plan).sort())
          for (const j of views[0].jobs) {
            expect(j.attempt).toBe(maxAttempt[j.name])
            for (const a of j.attempts) expect(JOB_RANK[a.status]).toBe(globalSeen.get(`${j.name}#${a.n}`))
          }
          for (const r of replicas) {
            const got = JOBS.flatMap(j => readReports(r.reports[j]).map(x => `${j}:${x.message}`)).sort()
            expect(got).toEqual([...sent].sort())
          }
        }
      ),
      { numRuns: 300 }
    )
  })
})
