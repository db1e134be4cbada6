/**
 * Disk faults against the real `concord` binary: a full disk (a real 2 MB tmpfs when this process may
 * mount one), a read-only store, the store directory deleted under a running watcher, and chunk files
 * truncated, zeroed or replaced by garbage. Each must give a clear one-line error (or a skipped /
 * quarantined chunk and a warning), never a stack trace, and lose nothing that was durable.
 */
import { spawn, spawnSync } from "node:child_process"
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { reportDocId } from "../../src/doc/ids.js"
import { BIN, cleanup, concord, tempDir } from "../helpers/cli.js"
import { startMcp } from "../mcp/client.js"

const ENOSPC_PRELOAD = new URL("./enospc-preload.mjs", import.meta.url).pathname

const dirs: string[] = []
const mounts: string[] = []
afterAll(() => {
  for (const m of mounts) spawnSync("umount", ["-l", m])
  dirs.forEach(cleanup)
})

const PLAN = `name: disk\njobs:\n  - { name: A, run: "true" }\n  - { name: B, run: "true" }\n`

/** No stack trace, and every line of stderr is one of concord's own. */
function expectClean(stderr: string): void {
  expect(stderr).not.toMatch(/\n\s+at /)
  expect(stderr).not.toMatch(/(TypeError|RangeError|ReferenceError|Unhandled|node:internal)/)
  for (const l of stderr.split("\n").filter(Boolean)) expect(l).toMatch(/^concord: /)
}

async function newPlan(store: string): Promise<string> {
  const planDir = tempDir("concord-disk-plan-")
  dirs.push(planDir)
  const file = path.join(planDir, "plan.yaml")
  writeFileSync(file, PLAN)
  const r = await concord(store, ["plan", "create", file, "--json"], { cwd: planDir })
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout).id
}

async function report(store: string, id: string, job: string, msg: string) {
  return await concord(store, ["report", "progress", msg, "--job", job, "--plan", id], { cwd: path.dirname(store) })
}

async function messages(store: string, id: string): Promise<string[]> {
  const h = await concord(store, ["history", id, "--json"], { cwd: path.dirname(store) })
  expect(h.code, h.stderr).toBe(0)
  return JSON.parse(h.stdout)
    .filter((e: any) => String(e.doc).startsWith("reports:"))
    .map((e: any) => e.did as string)
}

/** Resolves once nothing under `dir` was created, removed or modified for `quietMs`. */
async function quiet(dir: string, quietMs = 1500, timeoutMs = 60_000): Promise<void> {
  const listing = () => {
    const out: string[] = []
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name)
        try {
          out.push(`${p} ${statSync(p).mtimeMs}`)
          if (e.isDirectory()) walk(p)
        } catch {
          out.push(`${p} gone`)
        }
      }
    }
    walk(dir)
    return out.join("\n")
  }
  const deadline = Date.now() + timeoutMs
  let last = listing()
  let since = Date.now()
  while (Date.now() - since < quietMs && Date.now() < deadline) {
    await new Promise(r => setTimeout(r, 200))
    const now = listing()
    if (now !== last) [last, since] = [now, Date.now()]
  }
}

/** Every chunk file under the store's document directories. */
function chunkFiles(store: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else if (/\/(snapshot|incremental)\/[^/]+$/.test(p)) out.push(p)
    }
  }
  for (const e of readdirSync(store, { withFileTypes: true })) {
    if (e.isDirectory() && e.name.length === 2) walk(path.join(store, e.name))
  }
  return out
}

function tryMountTmpfs(size: string): string | undefined {
  const m = tempDir("concord-tmpfs-")
  dirs.push(m)
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", m])
  if (r.status !== 0) return undefined
  mounts.push(m)
  return m
}

const canMount = (() => {
  if (process.getuid?.() !== 0) return false
  const m = tempDir("concord-tmpfs-probe-")
  const ok = spawnSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", m]).status === 0
  if (ok) spawnSync("umount", [m])
  rmSync(m, { recursive: true, force: true })
  return ok
})()

/**
 * A full disk, made one of two ways: a real tmpfs filled up (where this process may mount one), or
 * injected (test/chaos/enospc-preload.mjs: every write under the store fails with ENOSPC after part of
 * its data landed). The same checks either way.
 */
async function fullDisk(way: "tmpfs" | "injected"): Promise<void> {
  const m = way === "tmpfs" ? tryMountTmpfs("2m")! : tempDir("concord-enospc-")
  if (way === "injected") dirs.push(m)
  const store = path.join(m, "store")
  mkdirSync(store)
  const id = await newPlan(store)
  for (let i = 0; i < 5; i++) expect((await report(store, id, "A", `m${i}`)).code).toBe(0)
  // a long-lived MCP server, started while there is room (its writes, once it knows a directory, are
  // blocking calls): it sees the disk fill up and free up again
  const armed = path.join(tempDir("concord-enospc-armed-"), "armed")
  dirs.push(path.dirname(armed))
  const injected = { NODE_OPTIONS: `--import=${ENOSPC_PRELOAD}`, CONCORD_TEST_ENOSPC: m, CONCORD_TEST_ENOSPC_ARMED: armed }
  const server = await startMcp(["--store", store, "--plan", id, "--job", "A", "--attempt", "1"], { env: way === "injected" ? injected : {} })
  const viaMcp = (message: string) => server.call("mc_report", { status: "progress", message })
  expect((await viaMcp("mcp before")).isError).toBeFalsy()
  const before = chunkFiles(store).length
  let env: NodeJS.ProcessEnv | undefined
  if (way === "tmpfs") {
    // fill the disk
    const fd = openSync(path.join(m, "filler"), "w")
    const block = Buffer.alloc(64 * 1024, 1)
    try {
      for (;;) writeSync(fd, block)
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toBe("ENOSPC")
    } finally {
      closeSync(fd)
    }
    // top up the last few bytes too
    try {
      writeFileSync(path.join(m, "filler2"), Buffer.alloc(4096, 1))
    } catch {}
  } else {
    writeFileSync(armed, "")
    env = injected
  }
  const run = (args: string[], cwd = path.dirname(store)) => concord(store, args, { cwd, env })

  const full = await run(["report", "progress", "on a full disk", "--job", "A", "--plan", id])
  expect(full.code).toBe(1)
  expect(full.stderr).toMatch(/^concord: cannot write .*: no space left on device \(ENOSPC\)\n$/)
  expectClean(full.stderr)
  // the MCP tool refuses with the same words
  const refused = await viaMcp("on a full disk via MCP")
  expect(refused.isError).toBe(true)
  expect(refused.content[0].text).toMatch(/^cannot write .*: no space left on device \(ENOSPC\)$/)
  // (the plan file itself is on a disk with room)
  const planDir = tempDir("concord-enospc-plan-")
  dirs.push(planDir)
  const planFile = path.join(planDir, "nope.yaml")
  writeFileSync(planFile, 'name: nope\njobs:\n  - { name: x, run: "true" }\n')
  const created = await run(["plan", "create", planFile])
  expect(created.code).toBe(1)
  expect(created.stderr).toMatch(/no space left on device \(ENOSPC\)/)
  expectClean(created.stderr)

  // reads work on a full disk
  const s = await run(["status", id, "--json"], m)
  expect(s.code, s.stderr).toBe(0)
  expect(JSON.parse(s.stdout).jobs.find((j: any) => j.name === "A").lastReport.message).toBe("mcp before")
  // nothing half-written: no new chunk file, no empty one, no temp file left behind
  expect(chunkFiles(store).length).toBe(before)
  for (const f of chunkFiles(store)) expect(statSync(f).size).toBeGreaterThan(0)
  expect(existsSync(path.join(store, ".tmp")) ? readdirSync(path.join(store, ".tmp")) : []).toEqual([])

  // space again: everything acknowledged is there, and writing works
  if (way === "tmpfs") {
    unlinkSync(path.join(m, "filler"))
    rmSync(path.join(m, "filler2"), { force: true })
  } else unlinkSync(armed)
  expect((await report(store, id, "A", "m5")).code).toBe(0)
  expect((await viaMcp("mcp after")).isError).toBeFalsy()
  await server.close()
  const msgs = await messages(store, id)
  expect(msgs.filter(d => /progress/.test(d))).toHaveLength(8)
  expect((await concord(store, ["doctor"])).code).toBe(0)
}

describe("disk faults", () => {
  it.skipIf(!canMount)(
    "a full disk (real tmpfs): clear ENOSPC error, no partial chunk, reads still work, nothing durable lost",
    () => fullDisk("tmpfs"),
    120_000
  )

  it("a full disk (injected ENOSPC, for machines without tmpfs): the same", () => fullDisk("injected"), 120_000)

  it("a read-only store: writes fail with a clear error, reads work, nothing changes", async () => {
    const root = canMount ? tryMountTmpfs("8m")! : tempDir("concord-ro-")
    if (!canMount) dirs.push(root)
    const store = path.join(root, "store")
    mkdirSync(store)
    const id = await newPlan(store)
    expect((await report(store, id, "A", "before")).code).toBe(0)
    const files = chunkFiles(store).sort()
    if (canMount) expect(spawnSync("mount", ["-o", "remount,ro", root]).status).toBe(0)
    else spawnSync("chmod", ["-R", "a-w", store])
    try {
      const w = await report(store, id, "A", "after")
      expect(w.code).toBe(1)
      expect(w.stderr).toMatch(/^concord: cannot (write|create directory) .*(read-only file system|permission denied)( \[at [^\]]+\])? \((EROFS|EACCES)\)\n$/)
      expectClean(w.stderr)
      const s = await concord(store, ["status", id, "--json"], { cwd: root })
      expect(s.code, s.stderr).toBe(0)
      expectClean(s.stderr)
      expect(JSON.parse(s.stdout).jobs.find((j: any) => j.name === "A").lastReport.message).toBe("before")
      const d = await concord(store, ["doctor"], { cwd: root })
      expect(d.code, d.stdout + d.stderr).toBe(0)
      expect(chunkFiles(store).sort()).toEqual(files)
    } finally {
      if (canMount) spawnSync("mount", ["-o", "remount,rw", root])
      else spawnSync("chmod", ["-R", "u+w", store])
    }
    expect((await report(store, id, "A", "after")).code).toBe(0)
  }, 120_000)

  it("the store directory deleted under a running watcher and writers: clear errors, the watcher survives", async () => {
    const store = path.join(tempDir("concord-gone-"), "store")
    dirs.push(path.dirname(store))
    mkdirSync(store)
    const id = await newPlan(store)
    expect((await report(store, id, "A", "m0")).code).toBe(0)
    const w = spawn(process.execPath, [BIN, "status", id, "--watch", "--json"], {
      env: { ...process.env, CONCORD_STORE: store },
      cwd: path.dirname(store),
    })
    let out = ""
    let err = ""
    w.stdout.on("data", d => (out += d))
    w.stderr.on("data", d => (err += d))
    const exited = new Promise<number | null>(r => w.on("close", c => r(c)))
    await until(() => out.includes("\n"))
    // The watcher writes at start-up (its report-digest cache, a compaction); on a loaded machine that
    // can still go on after its first output, and a directory written into while rm removes it fails
    // with ENOTEMPTY. The fault is the store vanishing under an idle live watcher: wait until it is quiet.
    // (and rm retries, as a user would, if a last write still lands while it removes the tree)
    await quiet(store)
    rmSync(store, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 })
    await new Promise(r => setTimeout(r, 1500))
    expect(w.exitCode).toBe(null) // still watching
    const r = await report(store, id, "A", "m1")
    expect(r.code).toBe(1) // not stored, and the reporter is told so
    expect(r.stderr.trim()).toBe(`concord: store ${store} is gone: its directory does not exist (deleted or moved away?)`)
    expectClean(r.stderr)
    expect(existsSync(store)).toBe(false) // neither the watcher nor the report brought back a skeleton
    expect(err).toMatch(/^concord: warning: watch: store .* is gone: its directory does not exist .*; will retry/m)
    // the store comes back: writing works again (the watcher keeps running without error)
    mkdirSync(store)
    const id2 = await newPlan(store)
    expect(id2).not.toBe(id)
    w.kill("SIGTERM")
    expect(await exited).toBe(0)
    expectClean(err)
  }, 120_000)

  for (const kind of ["truncated", "zeroed", "garbage"] as const) {
    it(`a ${kind} chunk: skipped with a warning, quarantined once old, every other report intact`, async () => {
      const store = path.join(tempDir("concord-dmg-"), "store")
      dirs.push(path.dirname(store))
      mkdirSync(store)
      const id = await newPlan(store)
      for (let i = 0; i < 4; i++) expect((await report(store, id, "B", `m${i}`)).code).toBe(0)
      const inc = path.join(store, reportDocId(id, "B").slice(0, 2), reportDocId(id, "B").slice(2), "incremental")
      const files = existsSync(inc) ? readdirSync(inc).map(f => path.join(inc, f)) : []
      // damage the newest incremental if there is one, else add a damaged file next to the snapshot
      const victim = files.sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs).pop() ?? path.join(inc, "e".repeat(64))
      const original = existsSync(victim) ? readFileSync(victim) : Buffer.alloc(200, 7)
      mkdirSync(inc, { recursive: true })
      if (kind === "truncated") writeFileSync(victim, original.subarray(0, Math.floor(original.length / 2)))
      else if (kind === "zeroed") writeFileSync(victim, Buffer.alloc(original.length))
      else writeFileSync(victim, Buffer.from("\x1b[31mthis is not automerge\x00\xff".repeat(4), "binary"))

      const fresh = await concord(store, ["history", id, "--json"], { cwd: path.dirname(store) })
      expect(fresh.code, fresh.stderr).toBe(0)
      expect(fresh.stderr).toMatch(/skipping damaged Automerge chunk/)
      expectClean(fresh.stderr)
      const got = JSON.parse(fresh.stdout).filter((e: any) => e.doc === "reports:B" && /progress/.test(e.did)).length
      expect(got).toBeGreaterThanOrEqual(3) // at most the damaged chunk's one report is gone

      const old = new Date(Date.now() - 120_000)
      utimesSync(victim, old, old)
      const h = await concord(store, ["history", id, "--json"], { cwd: path.dirname(store) })
      expect(h.code, h.stderr).toBe(0)
      expect(h.stderr).toMatch(/moved it to .*quarantine/)
      expectClean(h.stderr)
      const s = await concord(store, ["status", id, "--json"], { cwd: path.dirname(store) })
      expect(s.code, s.stderr).toBe(0)
      expect(s.stderr).toMatch(/^concord: warning: 1 quarantined chunk file in /)
      expectClean(s.stderr)
      expect(existsSync(victim)).toBe(false)
      expect((await messages(store, id)).filter(d => /progress/.test(d)).length).toBe(got)
      // writing goes on; doctor reports the quarantined file as damaged
      expect((await report(store, id, "B", "after")).code).toBe(0)
      const d = await concord(store, ["doctor", "--json"], { cwd: path.dirname(store) })
      expect(d.code).toBe(1)
      expect(JSON.parse(d.stdout).quarantine.map((q: any) => q.outcome)).toEqual(["damaged"])
    }, 120_000)
  }

  it("a plan whose only chunk is damaged: a clear error, and the file stays where it is", async () => {
    const store = path.join(tempDir("concord-only-"), "store")
    dirs.push(path.dirname(store))
    mkdirSync(store)
    const id = await newPlan(store)
    const planFiles = chunkFiles(store).filter(f => f.includes(path.join(id.slice(0, 2), id.slice(2))))
    expect(planFiles).toHaveLength(1)
    writeFileSync(planFiles[0], Buffer.alloc(statSync(planFiles[0]).size))
    const old = new Date(Date.now() - 120_000)
    utimesSync(planFiles[0], old, old)
    const s = await concord(store, ["status", id], { cwd: path.dirname(store) })
    expect(s.code).toBe(1)
    expect(s.stderr).toMatch(/cannot be read: its document in .* is damaged or incomplete \(see concord doctor\)/)
    expectClean(s.stderr)
    expect(existsSync(planFiles[0])).toBe(true)
    truncateSync(planFiles[0], 0)
  }, 60_000)
})

async function until(cond: () => boolean | Promise<boolean>, ms = 30_000) {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("timeout")
    await new Promise(r => setTimeout(r, 50))
  }
}
