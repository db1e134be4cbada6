/**
 * The write rules of the sync server's access control, on Automerge documents directly (no sockets):
 * the changes of a message are applied to a copy of the server's document and judged by what they do.
 */
import * as A from "@automerge/automerge"
import { describe, expect, it, vi } from "vitest"
import { newDocId } from "../../../src/doc/ids.js"
import {
  acquireLease,
  approveCheckpoint,
  cancelPlan,
  createPlan,
  type PlanDocument,
  raiseCheckpoint,
  retryJob,
  setJobStatus,
  setPlanStatus,
  skipJob,
  updateAttempt,
} from "../../../src/doc/plan.js"
import { appendReport, reportsGenesis, type ReportsDocument } from "../../../src/doc/reports.js"
import { AccessPolicy, type DocRef, judgeChanges, PlanIndex } from "../../../src/sync/net/access.js"
import { listChunks } from "../../../src/sync/storage/chunk-format.js"
import type { Role, TokenRecord } from "../../../src/sync/net/tokens.js"
import { ctx, fork, spec } from "../../doc/helpers.js"

const planId = newDocId()
const base = () => createPlan(spec([{ name: "A" }, { name: "B" }]), { baseDir: "." }, ctx())
/** Automerge documents are single-use: branch from a copy. */
const br = <T>(d: A.Doc<T>) => A.clone(d)
const judge = (role: Role, before: A.Doc<unknown> | undefined, after: A.Doc<unknown>, ref: DocRef = { planId }, plan?: A.Doc<unknown>) =>
  judgeChanges({ role, ref, doc: before, plan, entries: before ? A.getChanges(before, after) : A.getAllChanges(after) })
const okOf = (v: ReturnType<typeof judge>) => (v.ok ? "ok" : v.reason)
const raw = (d: PlanDocument, f: (x: any) => void) => A.change(br(d), x => void f(x))
const running = () => setJobStatus(setJobStatus(base(), "B", "running", { pid: 1 }, ctx()), "A", "running", {}, ctx())

describe("job:NAME in the plan document", () => {
  it("allows its agent's moves: running -> completed | failed, and facts of the current attempt", () => {
    const r = running()
    expect(okOf(judge("job:B", r, setJobStatus(br(r), "B", "completed", { exitCode: 0 }, ctx("job:B#1@h:1"))))).toBe("ok")
    expect(okOf(judge("job:B", r, setJobStatus(br(r), "B", "failed", { reason: "tests fail", failureKind: "reported_failed" }, ctx())))).toBe("ok")
    expect(okOf(judge("job:B", r, updateAttempt(br(r), "B", 1, { heartbeatAt: 5, exitCode: 0 }, ctx())))).toBe("ok")
    // a value written as collaborative text (a stock client writing a plain string) is judged by its value
    expect(
      okOf(
        judge(
          "job:B",
          r,
          raw(r, d => (d.jobs.B.status["1"] = "completed"))
        )
      )
    ).toBe("ok")
    expect(
      okOf(
        judge(
          "job:B",
          r,
          raw(r, d => (d.jobs.B.attempts["1"].reason = "plain text"))
        )
      )
    ).toBe("ok")
  })

  it("refuses every other move, attempts, other jobs, plan-level keys and structure changes", () => {
    const d0 = base()
    const r = running()
    const failed = setJobStatus(br(r), "B", "failed", {}, ctx())
    const retried = setJobStatus(retryJob(br(failed), "B", ctx()), "B", "running", {}, ctx())
    const cases: [string, PlanDocument, PlanDocument, RegExp][] = [
      ["start itself", d0, setJobStatus(br(d0), "B", "running", {}, ctx()), /from queued to running/],
      ["queued -> completed", d0, setJobStatus(br(d0), "B", "completed", {}, ctx()), /from queued to completed/],
      ["merged", r, raw(r, d => (d.jobs.B.status["1"] = new A.ImmutableString("merged"))), /from running to merged/],
      ["ready_to_merge", r, raw(r, d => (d.jobs.B.status["1"] = new A.ImmutableString("ready_to_merge"))), /from running to ready_to_merge/],
      ["stop", r, setJobStatus(br(r), "B", "stopped", {}, ctx()), /from running to stopped/],
      ["skip", r, skipJob(br(r), "B", ctx()), /skipped|outside/],
      ["retry", failed, retryJob(br(failed), "B", ctx()), /may not create attempts/],
      ["old attempt", retried, raw(retried, d => (d.jobs.B.status["1"] = new A.ImmutableString("completed"))), /current attempt \(2\)/],
      ["garbage status", r, raw(r, d => (d.jobs.B.status["1"] = new A.ImmutableString("done!"))), /from running to queued|invalid job status/],
      ["job A", r, setJobStatus(br(r), "A", "completed", {}, ctx()), /jobs\.A\.status\.1\) is outside/],
      ["plan status", d0, setPlanStatus(br(d0), "running", ctx()), /put status\) is outside/],
      ["checkpoint", r, raiseCheckpoint(br(r), "on_error", { jobName: "B" }, ctx()), /outside/],
      ["lease", d0, acquireLease(br(d0), { holder: "h", host: "x", pid: 1, ttlMs: 1000 }, ctx()), /lease/],
      ["run command", d0, raw(d0, d => (d.jobs.B.run = new A.ImmutableString("rm -rf /"))), /jobs\.B\.run\) is outside/],
      ["log path", r, updateAttempt(br(r), "B", 1, { log: "../../x" }, ctx()), /may not set log of an attempt/],
      ["pid", r, updateAttempt(br(r), "B", 1, { pid: 999 }, ctx()), /may not set pid/],
      ["nested value", r, raw(r, d => (d.jobs.B.attempts["1"].note = { evil: 1 })), /plain values|attempt facts/],
      ["delete an attempt record", d0, raw(d0, d => delete d.jobs.B.attempts["1"]), /replace or delete|outside/],
      ["replace the status map", d0, raw(d0, d => (d.jobs.B.status = { "1": "merged" })), /outside/],
    ]
    const approval = raiseCheckpoint(failed, "on_error", { jobName: "B" }, ctx())
    cases.push(["approval", approval, approveCheckpoint(br(approval), { id: "x" }, ctx()).doc, /approvals/])
    for (const [what, before, after, reason] of cases) expect(okOf(judge("job:B", before, after)), what).toMatch(reason)
  })

  it("judges the merged result too: an agent cannot override what the orchestrator decided concurrently", () => {
    const r = running()
    const agent = setJobStatus(fork(r), "B", "completed", {}, ctx("job:B#1@h:1"))
    const server = setJobStatus(br(r), "B", "stopped", { reason: "stale" }, ctx("orchestrator@h:1"))
    // in the agent's own view running -> completed is fine; on the server it would turn stopped into completed
    expect(okOf(judge("job:B", server, A.merge(br(server), agent)))).toMatch(/from stopped to completed on the server/)
    // a change built on an old view (attempt 1 current) after a retry cannot rewrite attempt 1
    const f = setJobStatus(br(r), "B", "failed", {}, ctx())
    const now = setJobStatus(retryJob(br(f), "B", ctx()), "B", "running", {}, ctx())
    const old = setJobStatus(fork(r), "B", "completed", {}, ctx("job:B#1@h:1"))
    expect(okOf(judge("job:B", now, A.merge(br(now), old)))).toMatch(/current attempt \(2\)|attempt 1/)
  })

  it("accepts writes to either of two attempt records created concurrently (a retry race)", () => {
    const failed = setJobStatus(running(), "B", "failed", {}, ctx())
    const r1 = retryJob(fork(failed), "B", ctx())
    const r2 = retryJob(fork(failed), "B", ctx())
    const merged = A.merge(A.clone(r1), A.clone(r2))
    expect(Object.keys(A.getConflicts(merged.jobs.B.attempts, "2") ?? {}).length).toBe(2)
    for (const r of [r1, r2]) {
      const on = updateAttempt(br(r), "B", 2, { heartbeatAt: 9 }, ctx())
      expect(okOf(judge("job:B", merged, A.merge(br(merged), on)))).toBe("ok")
    }
  })
})

describe("writer in the plan document", () => {
  it("allows everything the orchestrator and humans do", () => {
    const d0 = base()
    let d = setPlanStatus(br(d0), "running", ctx())
    d = setJobStatus(d, "A", "running", {}, ctx())
    d = setJobStatus(d, "A", "failed", { exitCode: 1 }, ctx())
    d = raiseCheckpoint(d, "on_error", { jobName: "A" }, ctx(), { job: "A", attempt: 1 })
    d = approveCheckpoint(d, { id: "ap" }, ctx()).doc
    d = retryJob(d, "A", ctx())
    d = skipJob(d, "A", ctx())
    d = cancelPlan(d, ctx())
    expect(okOf(judge("writer", d0, d))).toBe("ok")
    const f = setJobStatus(setJobStatus(base(), "B", "running", {}, ctx()), "B", "failed", {}, ctx())
    expect(okOf(judge("writer", f, skipJob(br(f), "B", ctx())))).toBe("ok")
  })

  it("refuses transitions the state machines forbid, deletions and invalid values", () => {
    const r = running()
    const done = setJobStatus(br(r), "B", "completed", {}, ctx())
    const cases: [string, PlanDocument, PlanDocument, RegExp][] = [
      ["backwards", r, raw(r, d => (d.jobs.B.status["1"] = new A.ImmutableString("queued"))), /from running to queued: the state machine forbids it/],
      ["completed -> failed", done, raw(done, d => (d.jobs.B.status["1"] = new A.ImmutableString("failed"))), /from completed to failed/],
      ["running -> merged", r, raw(r, d => (d.jobs.B.status["1"] = new A.ImmutableString("merged"))), /from running to merged/],
      [
        "retry of a running job",
        r,
        raw(r, d => (d.jobs.B.status["2"] = new A.ImmutableString("queued"))),
        /may not start attempt 2 of job B as queued after running/,
      ],
      ["invalid status", r, raw(r, d => (d.jobs.B.status["1"] = new A.ImmutableString("yes"))), /invalid job status "yes"/],
      ["plan pending -> completed", r, raw(r, d => (d.status = new A.ImmutableString("completed"))), /from pending to completed/],
      ["invalid plan status", r, raw(r, d => (d.status = new A.ImmutableString("nope"))), /invalid plan status/],
      ["delete a job", r, raw(r, d => delete d.jobs.A), /may not delete job A/],
      ["delete a status", r, raw(r, d => delete d.jobs.A.status["1"]), /may not delete attempt 1 of job A|from running to queued/],
      ["replace the jobs map", r, raw(r, d => (d.jobs = {})), /replace the jobs map/],
    ]
    for (const [what, before, after, reason] of cases) expect(okOf(judge("writer", before, after)), what).toMatch(reason)
  })

  it("judges each change in the view it was made on: the founding race across machines merges", () => {
    const r = running()
    // the orchestrator saw A's process die; the agent, offline, had already reported completed
    const server = setJobStatus(br(r), "A", "failed", { reason: "process lost" }, ctx("orchestrator@h:1"))
    const offline = setJobStatus(fork(r), "A", "completed", {}, ctx("user@laptop"))
    expect(okOf(judge("writer", server, A.merge(br(server), offline)))).toBe("ok")
  })
})

describe("job:NAME in its report log", () => {
  const ref: DocRef = { planId, job: "B" }
  const plan = running()
  it("allows the genesis change and appending reports for the current attempt, nothing else", () => {
    const g = reportsGenesis(planId, "B")
    const one = appendReport(br(g), { status: "progress", message: "a", attempt: 1 }, ctx())
    const two = appendReport(br(one), { status: "completed", message: "b", attempt: 1 }, ctx())
    // a new log: genesis + reports, judged against nothing
    const v = judge("job:B", undefined, two, ref, plan)
    expect(okOf(v)).toBe("ok")
    expect(v.ok && [v.created, v.changes.length]).toEqual([true, 3])
    // text written by a stock client
    expect(
      okOf(
        judge(
          "job:B",
          two,
          A.change(br(two), d => void d.reports.push({ status: "progress", message: "plain", progress: 3, at: 1, by: "x", attempt: 1 } as any)),
          ref,
          plan
        )
      )
    ).toBe("ok")
    const cases: [string, ReportsDocument, RegExp][] = [
      ["edit", A.change(br(two), d => void ((d.reports[0] as any).message = new A.ImmutableString("rewritten"))), /no edits or deletions/],
      ["delete", A.change(br(two), d => void d.reports.splice(0, 1)), /no edits or deletions/],
      ["root", A.change(br(two), d => void ((d as any).job = new A.ImmutableString("A"))), /only append reports/],
      [
        "insert first",
        A.change(br(two), d => void d.reports.unshift({ status: "progress", message: "x", progress: null, at: 1, by: "x", attempt: 1 } as any)),
        /not insert before existing ones/,
      ],
      [
        "old attempt",
        appendReport(br(two), { status: "completed", message: "c", attempt: 2 }, ctx()),
        /a report for attempt 2, but the job's current attempt is 1/,
      ],
      [
        "bad status",
        A.change(br(two), d => void d.reports.push({ status: "merged", message: "x", progress: null, at: 1, by: "x", attempt: 1 } as any)),
        /invalid report status/,
      ],
      [
        "bad progress",
        A.change(br(two), d => void d.reports.push({ status: "progress", message: "x", progress: 101, at: 1, by: "x", attempt: 1 } as any)),
        /progress must be/,
      ],
    ]
    for (const [what, after, reason] of cases) expect(okOf(judge("job:B", two, after, ref, plan)), what).toMatch(reason)
    // a new log must start from the shared genesis: another job's genesis, or none at all, is refused
    expect(okOf(judge("job:B", undefined, reportsGenesis(planId, "A"), ref, plan))).toMatch(/genesis/)
    expect(okOf(judge("job:B", undefined, A.from({ reports: [] }), ref, plan))).toMatch(/genesis/)
  })

  it("refuses changes whose dependencies the server does not have", () => {
    const g = reportsGenesis(planId, "B")
    const one = appendReport(br(g), { status: "progress", message: "a", attempt: 1 }, ctx())
    const two = appendReport(br(one), { status: "progress", message: "b", attempt: 1 }, ctx())
    const onlySecond = judgeChanges({ role: "job:B", ref, doc: g, plan, entries: A.getChanges(one, two) })
    expect(okOf(onlySecond)).toMatch(/depend on 1 change\(s\) the server does not have/)
  })
})

describe("unpacking a sync message's changes", () => {
  it("reads plain changes, concatenated chunks, bundles and whole documents; refuses garbage", () => {
    let d = A.from<{ n: number; xs: number[] }>({ n: 0, xs: [] })
    const start = A.clone(d)
    for (let i = 0; i < 20; i++) d = A.change(d, x => void ((x.n = i), x.xs.push(i)))
    const changes = A.getChanges(start, d)
    const hashes = changes.map(c => A.decodeChange(c).hash).sort()
    const concat = new Uint8Array(changes.reduce((n, c) => n + c.length, 0))
    changes.reduce((off, c) => (concat.set(c, off), off + c.length), 0)
    const got = (entries: Uint8Array[], doc: A.Doc<unknown> | null = start) => {
      const v = judgeChanges({ role: "admin", ref: undefined, doc: doc ?? undefined, entries })
      return v.ok ? v.changes.map(c => c.hash).sort() : v.reason
    }
    expect(got(changes)).toEqual(hashes)
    expect(got([concat])).toEqual(hashes)
    expect(got([A.saveBundle(d, hashes)])).toEqual(hashes)
    expect(got([A.save(d)], null)).toEqual(
      A.getAllChanges(d)
        .map(c => A.decodeChange(c).hash)
        .sort()
    )
    expect(got([Uint8Array.of(1, 2, 3)])).toMatch(/undecodable/)
    expect(got([A.save(d).slice(0, 40)])).toMatch(/undecodable/)
    // changes the server already has are nothing new
    expect(got(changes, d)).toEqual([])
  })

  it("a reader's message with only changes the server already has passes; a new change does not", async () => {
    const index = new PlanIndex()
    const d0 = base()
    index.setPlan(planId, "p", ["A", "B"])
    const policy = new AccessPolicy(index)
    const reader: TokenRecord = { id: "tk_r", sha256: "0".repeat(64), role: "reader", plans: [planId], createdAt: 0 }
    const msg = (changes: Uint8Array[]) => ({ type: "sync", documentId: planId, data: A.encodeSyncMessage({ heads: [], need: [], have: [], changes }) })
    const current = async () => d0 as A.Doc<unknown>
    expect((await policy.judge(reader, msg(A.getAllChanges(d0)), current)).ok).toBe(true)
    const more = setJobStatus(br(d0), "A", "running", {}, ctx())
    expect(okOf(await policy.judge(reader, msg(A.getChanges(d0, more)), current))).toMatch(/read-only/)
    // no access to another plan's documents, whatever the message
    expect((await policy.judge(reader, { ...msg(A.getAllChanges(d0)), documentId: newDocId() }, current)).ok).toBe(false)
  })

  it("an admin's accepted message (kept without a JavaScript view) is the base of the next message while the Repo lags", async () => {
    const index = new PlanIndex()
    const d0 = base()
    index.setPlan(planId, "p", ["A", "B"])
    const policy = new AccessPolicy(index)
    const admin: TokenRecord = { id: "tk_a", sha256: "0".repeat(64), role: "admin", plans: ["*"], createdAt: 0 }
    const writer: TokenRecord = { id: "tk_w", sha256: "0".repeat(64), role: "writer", plans: [planId], createdAt: 0 }
    const msg = (changes: Uint8Array[]) => ({ type: "sync", documentId: planId, data: A.encodeSyncMessage({ heads: [], need: [], have: [], changes }) })
    const current = async () => d0 as A.Doc<unknown> // the Repo has not applied anything yet
    const note = (j: Awaited<ReturnType<AccessPolicy["judge"]>>) => {
      if (j.ok) policy.noteAccepted(planId, j)
      return j
    }
    // an admin moves A to running; then a writer, building on it, completes A: judged on top of the admin's change
    const one = setJobStatus(br(d0), "A", "running", {}, ctx())
    const j1 = note(await policy.judge(admin, msg(A.getChanges(d0, one)), current))
    expect(j1.ok && j1.changes.length).toBe(1)
    expect(j1.ok && j1.raw && !j1.doc).toBe(true)
    const two = setJobStatus(br(one), "A", "completed", {}, ctx())
    const j2 = note(await policy.judge(writer, msg(A.getChanges(one, two)), current))
    expect(okOf(j2 as never)).toBe("ok")
    expect(j2.ok && j2.changes.length).toBe(1)
    // the same admin message again: nothing new (the cache holds it); a writer's forbidden move is still refused
    expect(note(await policy.judge(admin, msg(A.getChanges(d0, one)), current)).ok).toBe(true)
    const bad = raw(two, d => (d.jobs.A.status["1"] = new A.ImmutableString("queued")))
    expect(okOf((await policy.judge(writer, msg(A.getChanges(two, bad)), current)) as never)).toMatch(/state machine forbids/)
  })
})

describe("an admin's new changes, as the audit lists them", () => {
  /** What Automerge says is new in `after` since `before`: hash, actor, author. */
  const expected = (after: A.Doc<unknown>, before: string[]) =>
    A.getChangesMetaSince(after, before)
      .map(m => `${m.hash} ${m.actor} ${m.message}`)
      .sort()
  const listed = (j: ReturnType<typeof judgeChanges>, after: A.Doc<unknown>) => {
    expect(j.ok).toBe(true)
    const metas = new Map(A.getChangesMetaSince(after, []).map(m => [m.hash, m]))
    return (j.ok ? j.changes : []).map(c => `${c.hash} ${c.actor} ${metas.get(c.hash)?.message}`).sort()
  }
  let base = A.from<{ n: number; text?: string }>({ n: 0 }, { actor: "aa".repeat(16) })
  const grow = (d: typeof base, k: number, actor: string, big = false) => {
    let x = A.clone(d, { actor })
    for (let i = 0; i < k; i++)
      x = A.change(x, { message: `{"by":"agent-${actor.slice(0, 2)}@h","n":${i}}` }, y => {
        y.n = i
        if (big) y.text = "x".repeat(2000 + i)
      })
    return x
  }
  base = grow(base, 3, "aa".repeat(16))

  it("new change chunks, large ones too: listed from their headers, exactly Automerge's list", () => {
    const mine = grow(base, 20, "bb".repeat(16), true)
    const sent = A.saveSince(mine, A.getHeads(base))
    const chunks = listChunks(sent)
    expect(chunks.ok && new Set(chunks.chunks.map(c => c.type))).toEqual(new Set([1])) // change chunks, as saveSince writes them
    const asked = vi.spyOn(Object.getPrototypeOf(A.getBackend(base)), "getChangesMeta")
    const j = judgeChanges({ role: "admin", ref: undefined, doc: base, entries: [sent] })
    expect(asked).not.toHaveBeenCalled()
    asked.mockRestore()
    expect(listed(j, mine)).toEqual(expected(mine, A.getHeads(base)))
    expect(listed(j, mine)).toHaveLength(20)
  })

  it("changes the server has already, and changes held back until now: Automerge's list", () => {
    const mine = grow(base, 6, "cc".repeat(16))
    const all = A.getChanges(base, mine)
    // the server has the first two, and holds back the fourth (its dependency, the third, is missing)
    let server = A.applyChanges(A.clone(base), all.slice(0, 2))[0]
    server = A.applyChanges(server, [all[3]])[0]
    const before = A.getHeads(server)
    const asked = vi.spyOn(Object.getPrototypeOf(A.getBackend(base)), "getChangesMeta")
    const j = judgeChanges({ role: "admin", ref: undefined, doc: server, entries: [A.saveSince(mine, A.getHeads(base))] })
    const merged = A.merge(A.clone(server), mine)
    expect(listed(j, merged)).toEqual(expected(merged, before))
    expect(asked).toHaveBeenCalled()
    asked.mockRestore()
    // duplicates sent: the two it had are not new
    const again = judgeChanges({
      role: "admin",
      ref: undefined,
      doc: A.applyChanges(A.clone(base), all.slice(0, 2))[0],
      entries: [A.saveSince(mine, A.getHeads(base))],
    })
    expect(again.ok && again.changes).toHaveLength(4)
  })
})
