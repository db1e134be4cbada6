/**
 * The tests' cleanup stops what their plans started: a runner killed mid-plan leaves its job's process
 * group running (by design: the next runner adopts it); cleanup must stop that group, and must not touch
 * a process group whose pid file does not match it (pid reuse).
 */
import { spawn } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { processInfo } from "../../src/orchestrator/proc.js"
import { cleanup, createPlan, statusJson, tempDir } from "./cli.js"
import { killJobProcesses } from "./jobs.js"
import { spawnConcord } from "./processes.mjs"
import { until } from "./until.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))

const alive = (pid: number) => {
  const p = processInfo(pid)
  return !!p && p.state !== "Z" && p.state !== "X"
}

describe("test cleanup of job processes", () => {
  it("stops the job process group a SIGKILLed runner left behind, and leaves a group its pid file does not match", async () => {
    const dir = tempDir("concord-jobs-")
    dirs.push(dir)
    const id = await createPlan(dir, "name: left\njobs:\n  - { name: a, run: 'while true; do sleep 0.2; done' }\n")
    const run = spawnConcord(dir, ["run", id], { timeoutMs: 300_000 })
    const pid: number = await until("job a running with a pid", async () => (await statusJson(dir, id)).jobs[0].pid, 60_000)
    run.child.kill("SIGKILL")
    await run.done
    expect(alive(pid)).toBe(true) // the job outlived its runner

    // a process group that is not the plan's: its pid file records another start time
    const other = spawn("sleep", ["60"], { detached: true, stdio: "ignore" })
    try {
      const fake = path.join(dir, "other", "logs", "p", "x.1.pid")
      mkdirSync(path.dirname(fake), { recursive: true })
      writeFileSync(fake, `${other.pid} 1\n`)

      expect(killJobProcesses(dir)).toBe(1)
      await until("the job's group gone", () => !alive(pid), 10_000)
      expect(alive(other.pid!)).toBe(true)
    } finally {
      other.kill("SIGKILL")
    }
  })
})
