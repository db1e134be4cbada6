/** The orchestrator's pure policy: no processes, no files, no clock. */
import { describe, expect, it } from "vitest"
import { createPlan, readPlan } from "../../src/doc/plan.js"
import {
  applyAction,
  jobEnv,
  judgeLock,
  leaseDecision,
  liveLeaseHolder,
  observedRecords,
  parseExitFile,
  parseLock,
  parsePidFile,
  PROMPT_ENV_MAX,
  remoteLost,
  resolveJobCwd,
  stopStep,
  untrackedLiveness,
} from "../../src/orchestrator/policy.js"

const sig = (n: number) => (n === 15 ? "SIGTERM" : n === 9 ? "SIGKILL" : `signal ${n}`)
const lease = (o: Partial<{ holder: string; host: string; pid: number; expiresAt: number }> = {}) => ({
  holder: "orchestrator@h:1",
  host: "h",
  pid: 1,
  acquiredAt: 0,
  expiresAt: 10_000,
  ...o,
})

describe("exit and pid files", () => {
  it("only a whole `<code>\\n` is an exit code; empty, torn or garbage is unknown, never 0", () => {
    expect(parseExitFile("3\n", sig)).toEqual({ code: 3, signal: null })
    expect(parseExitFile("0\n", sig)).toEqual({ code: 0, signal: null })
    expect(parseExitFile("143\n", sig)).toEqual({ code: null, signal: "SIGTERM" })
    for (const bad of ["", "3", "\n", "1x\n", "0\n0\n", " 0\n"]) {
      const e = parseExitFile(bad, sig)
      expect([e.code, e.signal], JSON.stringify(bad)).toEqual([null, null])
      expect(e.unknown).toMatch(/exit code unknown/)
    }
  })
  it("pid files name pid and start ticks; torn ones name nothing", () => {
    expect(parsePidFile("123 4567\n")).toEqual({ pid: 123, startTicks: 4567 })
    expect(parsePidFile("123 \n")).toEqual({ pid: 123, startTicks: null })
    expect(parsePidFile("12")).toBeUndefined()
    expect(parsePidFile("")).toBeUndefined()
  })
})

describe("liveness", () => {
  it("an unwatched attempt: exit file says how it ended; never started = start it; recent = still starting; else lost", () => {
    const base = { exit: undefined, pidFile: false, startedAt: 1000, now: 1500, launchWindowMs: 1000 }
    expect(untrackedLiveness({ ...base, exit: { code: 3, signal: null } })).toEqual({ kind: "exited", exit: { code: 3, signal: null } })
    expect(untrackedLiveness(base)).toEqual({ kind: "launching" })
    expect(untrackedLiveness({ ...base, now: 2500 })).toEqual({ kind: "lost" })
    // It wrote its pid file and its group is gone without an exit file: lost at once.
    expect(untrackedLiveness({ ...base, pidFile: true })).toEqual({ kind: "lost" })
    // No pid file: the command never ran (the wrapper writes it first). No log file either: never
    // spawned, started now. A log file: it may be starting until the window ends, then it is started.
    expect(untrackedLiveness({ ...base, logFile: false })).toEqual({ kind: "unstarted" })
    expect(untrackedLiveness({ ...base, logFile: false, now: 2500 })).toEqual({ kind: "unstarted" })
    expect(untrackedLiveness({ ...base, logFile: true })).toEqual({ kind: "launching" })
    expect(untrackedLiveness({ ...base, logFile: true, now: 2500 })).toEqual({ kind: "unstarted" })
    expect(untrackedLiveness({ ...base, logFile: false, pidFile: true })).toEqual({ kind: "lost" })
    expect(untrackedLiveness({ ...base, logFile: true, pidFile: true, now: 2500 })).toEqual({ kind: "lost" })
  })
  it("a remote job is lost after twice staleMs without any sign of life", () => {
    const f = { startedAt: 0, heartbeatAt: null, lastReportAt: 5000, now: 7000, staleMs: 1000 }
    expect(remoteLost(f)).toBe(false)
    expect(remoteLost({ ...f, now: 7001 })).toBe(true)
  })
})

describe("lease and lock", () => {
  const me = { holder: "orchestrator@h:2", host: "h" }
  it("free, expired and own leases are taken; a dead local holder's is taken over; a live or remote one is refused", () => {
    expect(leaseDecision(null, me, 0, () => true)).toEqual({ take: true, takeOver: false })
    expect(leaseDecision(lease({ expiresAt: 100 }), me, 100, () => true)).toEqual({ take: true, takeOver: false })
    expect(leaseDecision(lease({ holder: me.holder }), me, 0, () => true)).toEqual({ take: true, takeOver: false })
    expect(leaseDecision(lease(), me, 0, () => false)).toEqual({ take: true, takeOver: true })
    expect(leaseDecision(lease(), me, 0, () => true)).toMatchObject({ take: false, why: expect.stringMatching(/already run by orchestrator@h:1/) })
    expect(leaseDecision(lease({ host: "other" }), me, 0, () => false)).toMatchObject({ take: false })
  })
  it("a damaged lock is only taken over when no live holder has the lease", () => {
    expect(parseLock("")).toBeUndefined()
    expect(parseLock('{"holder":"x"')).toBeUndefined()
    const info = { holder: "o", host: "h", pid: 5, startedAt: 1 }
    expect(parseLock(JSON.stringify(info))).toEqual(info)
    expect(judgeLock(undefined, "h", () => true)).toBe("damaged")
    expect(judgeLock(info, "h", () => true)).toBe("held")
    expect(judgeLock(info, "h", () => false)).toBe("stale")
    expect(judgeLock(info, "other", () => false)).toBe("held")
    expect(liveLeaseHolder(null, "h", 0, () => true)).toBeNull()
    expect(liveLeaseHolder(lease(), "h", 0, () => false)).toBeNull()
    expect(liveLeaseHolder(lease({ expiresAt: 5 }), "h", 5, () => true)).toBeNull()
    expect(liveLeaseHolder(lease(), "h", 0, () => true)).toMatch(/orchestrator@h:1/)
    expect(liveLeaseHolder(lease({ host: "other" }), "h", 0, () => false)).toMatch(/orchestrator@h:1/)
  })
})

describe("stop escalation", () => {
  it("SIGTERM, then SIGKILL after the grace, again every rekill interval, until the whole group is gone", () => {
    const s = { termAt: null as number | null, killAt: null as number | null }
    expect(stopStep(s, true, 0, 100)).toBe("SIGTERM")
    s.termAt = 0
    expect(stopStep(s, true, 50, 100)).toBe("wait")
    expect(stopStep(s, true, 100, 100)).toBe("SIGKILL")
    s.killAt = 100
    expect(stopStep(s, true, 600, 100, 1000)).toBe("wait")
    expect(stopStep(s, true, 1100, 100, 1000)).toBe("SIGKILL")
    // The leader's exit is not the end: only an empty group is.
    expect(stopStep(s, false, 1100, 100)).toBe("done")
    expect(stopStep({ termAt: null, killAt: null }, false, 0, 100)).toBe("done")
  })
})

describe("where and how a job runs", () => {
  const exists = (dirs: string[]) => (d: string) => dirs.includes(d)
  it("cwd: absolute as is; relative to the plan's directory when it exists here, else to where concord run started; missing fails", () => {
    expect(resolveJobCwd({ baseDir: "/plans", cwd: "/abs", runDir: "/run" }, exists(["/abs"]))).toEqual({ dir: "/abs" })
    expect(resolveJobCwd({ baseDir: "/plans", cwd: "svc", runDir: "/run" }, exists(["/plans", "/plans/svc"]))).toEqual({ dir: "/plans/svc" })
    expect(resolveJobCwd({ baseDir: "/home/alice/plans", cwd: "svc", runDir: "/run" }, exists(["/run", "/run/svc"]))).toEqual({ dir: "/run/svc" })
    expect(resolveJobCwd({ baseDir: "/home/alice/plans", cwd: null, runDir: "/run" }, exists(["/run"]))).toEqual({ dir: "/run" })
    const missing = resolveJobCwd({ baseDir: "/home/alice/plans", cwd: "svc", runDir: "/run" }, exists(["/run"]))
    expect("error" in missing && missing.error).toMatch(
      /working directory \/run\/svc does not exist .*plan's directory \/home\/alice\/plans does not exist here/
    )
  })
  it("env: the job's own PATH is kept with concord's bin dir in front; prompts over the safe size only in the file", () => {
    const base = { PATH: "/usr/bin", HOME: "/h", CONCORD_PROMPT: "stale" }
    const vars = { CONCORD_JOB: "a" }
    const own = jobEnv({ base, env: { PATH: "/opt/tool/bin:/bin", X: "1" }, binDir: "/concord/bin", vars, prompt: "hi" })
    expect(own).toMatchObject({ PATH: "/concord/bin:/opt/tool/bin:/bin", X: "1", HOME: "/h", CONCORD_JOB: "a", CONCORD_PROMPT: "hi" })
    expect(jobEnv({ base, env: {}, binDir: "/concord/bin", vars, prompt: null }).PATH).toBe("/concord/bin:/usr/bin")
    const big = jobEnv({ base, env: {}, vars, prompt: "x".repeat(PROMPT_ENV_MAX + 1) })
    expect(big.CONCORD_PROMPT).toBeUndefined()
    expect(jobEnv({ base, env: {}, vars, prompt: "é".repeat(PROMPT_ENV_MAX / 2) }).CONCORD_PROMPT).toHaveLength(PROMPT_ENV_MAX / 2)
  })
})

describe("applyAction and observed records", () => {
  const doc = () =>
    createPlan(
      { name: "p", mode: "autopilot", maxParallel: 3, graceMs: 1000, staleMs: 60_000, jobs: [{ name: "a", run: "x", dependsOn: [], env: {} }] },
      { baseDir: "." },
      { by: "t", now: 1 }
    )
  const ctx = { by: "orchestrator@h:1", now: 50, host: "h", logOf: (j: string, n: number) => `logs/p/${j}.${n}.log` }
  it("launch records running with host, start and log before any process exists; a stale action is skipped, writing nothing", () => {
    const r = applyAction(doc(), { kind: "launch", job: "a", attempt: 1 }, ctx)
    expect(readPlan(r.doc).jobs[0].current).toMatchObject({ status: "running", host: "h", startedAt: 50, log: "logs/p/a.1.log" })
    const again = applyAction(r.doc, { kind: "setJob", job: "a", attempt: 1, to: "queued", fields: {} }, ctx)
    expect(again.doc).toBe(r.doc)
    expect(again.skipped).toMatch(/cannot go from running to queued/)
  })
  it("records the pid a killed runner never wrote, and throttled heartbeats", () => {
    const d = applyAction(doc(), { kind: "launch", job: "a", attempt: 1 }, ctx).doc
    const view = readPlan(d)
    const recs = observedRecords(view, [{ job: "a", attempt: 1, pid: 42, startedAtMs: 49, lastOutput: 50 + 20_000 }])
    expect(recs).toEqual([
      expect.objectContaining({ kind: "record", fields: { pid: 42, pidStartedAt: 49 } }),
      expect.objectContaining({ kind: "record", fields: { heartbeatAt: 20_050 } }),
    ])
    expect(observedRecords(view, [{ job: "a", attempt: 1, pid: 42, startedAtMs: 49, lastOutput: 51 }])).toHaveLength(1)
  })
})
