// What makes a one-shot `concord report` start faster, recorded at build time from real reports
// (scripts/bundle-cli.mjs runs this after the bundles are built): dist/cli/wasm-hints.json and
// dist/cli/lean.cache. Both only ever save time: bin/concord.js checks that each is for what it runs,
// and does without it otherwise.
//
// wasm-hints.json: which of Automerge's WebAssembly functions a report (or a one-shot sync) calls. A short command compiles
// Automerge's WebAssembly lazily: each function on its first call, on the main thread, with V8's
// baseline compiler. A report calls about 1,200 of its 4,500 functions, and compiling them one by one
// was the largest single cost of a report with no orchestrator running. With this file, bin/concord.js
// hands V8 the module with a compilation-hints section (V8's --experimental-wasm-compilation-hints: one
// byte per function, "eager" or "lazy") so that the functions the report calls are compiled on V8's
// background threads while the report's JavaScript loads, and the others stay lazy. The list comes from
// reports run here with V8's --trace-wasm-compilation-times, which names each function as it is
// compiled. bin/concord.js uses it only with the same V8 (major.minor) and the same Automerge WebAssembly
// (size, version), and compiles the module without it if V8 rejects it; a function the list misses is
// compiled lazily as before. No list is written (a warning) if the trace names no function.
//
// One more mark per function (8, "optimize ahead"): Automerge's SHA-256 compression function, found by its
// name in the module's name section. Every change Automerge loads or makes is hashed, so a command that
// loads a document of thousands of changes spends most of its load there; on the baseline compiler that
// function runs several times slower than optimized (a one-shot sync reading its 10,000 offline changes:
// 135 of its 200 ms of loading, 10 ms optimized). bin/concord.js has V8 compile it with the optimizing
// compiler ahead, on a background thread (a few ms), and runs it so from its first call.
//
// lean-sync.cache: the same for dist/cli/lean-sync.js (a one-shot `concord sync`), made at the end of real
// syncs with a sync server run here (in this process, over a store of its own).
//
// lean.cache: V8's code cache of dist/cli/lean.js (the report command's bundle), made by bin/concord.js
// itself (CONCORD_WRITE_CODE_CACHE=1) at the end of a real report, so that it holds the functions a
// report runs, compiled with the very flags a report runs with.
import { spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import os from "node:os"
import path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const OUT = path.join(ROOT, "dist", "cli", "wasm-hints.json")
const CACHE = path.join(ROOT, "dist", "cli", "lean.cache")
const SYNC_CACHE = path.join(ROOT, "dist", "cli", "lean-sync.cache")
const BIN = path.join(ROOT, "bin", "concord.js")

/** A cursor over a WebAssembly module's bytes, from after its 8-byte header: `at`, and `leb()` reads an unsigned LEB128 there. */
function wasmCursor(bytes) {
  const c = {
    at: 8,
    leb() {
      let r = 0
      let s = 0
      let x
      do {
        x = bytes[c.at++]
        r += (x & 0x7f) * 2 ** s
        s += 7
      } while (x & 0x80)
      return r
    },
  }
  return c
}

/** The module's function imports and declared functions, and where its code section starts. */
function wasmLayout(bytes) {
  const c = wasmCursor(bytes)
  const leb = c.leb
  const skipLimits = () => {
    const flags = leb()
    leb()
    if (flags & 1) leb()
  }
  let imports = 0
  let functions = -1
  let codeAt = -1
  let end = 0 // where the custom sections at the end begin (names, tool metadata)
  while (c.at < bytes.length) {
    const start = c.at
    const id = bytes[c.at++]
    const size = leb()
    const next = c.at + size
    if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        for (let k = 0; k < 2; k++) {
          const len = leb() // module name, field name
          c.at += len
        }
        const kind = bytes[c.at++]
        if (kind === 0) {
          leb() // a function: its type index
          imports++
        } else if (kind === 1) {
          c.at++ // a table: element type, limits
          skipLimits()
        } else if (kind === 2) {
          skipLimits() // a memory
        } else if (kind === 3) {
          c.at += 2 // a global: value type, mutability
        } else if (kind === 4) {
          c.at++ // a tag: attribute, type index
          leb()
        } else throw new Error(`unknown import kind ${kind}`)
      }
    } else if (id === 3) functions = leb()
    else if (id === 10) codeAt = start
    if (id !== 0) end = next
    c.at = next
  }
  if (functions < 0 || codeAt < 0) throw new Error("no function or code section")
  return { imports, functions, codeAt, end }
}

/** Absolute indices of the functions whose names (the module's "name" custom section) match `pattern`. */
export function namedFunctions(bytes, pattern) {
  const c = wasmCursor(bytes)
  const leb = c.leb
  const found = []
  while (c.at < bytes.length) {
    const id = bytes[c.at++]
    const size = leb()
    const next = c.at + size
    if (id === 0) {
      const len = leb()
      const name = Buffer.from(bytes.subarray(c.at, c.at + len)).toString("utf8")
      c.at += len
      while (name === "name" && c.at < next) {
        const sub = bytes[c.at++]
        const subEnd = leb() + c.at
        if (sub === 1) {
          // function names: count, then (index, name) pairs
          for (let n = leb(); n > 0; n--) {
            const index = leb()
            const l = leb()
            if (pattern.test(Buffer.from(bytes.subarray(c.at, c.at + l)).toString("utf8"))) found.push(index)
            c.at += l
          }
        }
        c.at = subEnd
      }
    }
    c.at = next
  }
  return found
}

/** What "optimize ahead" (class 8) marks: Automerge's SHA-256 compression (the sha2 crate's compress256). */
const OPTIMIZE_AHEAD = /^sha2\[[0-9a-f]+\]::sha256::compress256$/

const leb128 = n => {
  const out = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n) b |= 0x80
    out.push(b)
  } while (n)
  return out
}

/** The start of a custom section "compilationHints" for `functions` functions: one byte per function follows. */
function hintsHead(functions) {
  const name = Buffer.from("compilationHints")
  const payload = [...leb128(name.length), ...name, ...leb128(functions)]
  return Buffer.from([0, ...leb128(payload.length + functions), ...payload])
}

/** Run `concord ARGS` in `store` (with `node` options before it, `env` added); its stdout. */
function concord(store, args, { node = [], env = {} } = {}) {
  const e = { ...process.env, CONCORD_STORE: store, ...env }
  for (const k of ["CONCORD_PLAN", "CONCORD_JOB", "CONCORD_ATTEMPT"]) delete e[k]
  const r = spawnSync(process.execPath, [...node, BIN, ...args], { cwd: store, env: e, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 })
  if (r.status !== 0) throw new Error(`concord ${args.join(" ")} exited ${r.status ?? r.signal}: ${r.stderr}`)
  return r.stdout
}

/** The function indices V8 reports compiling while `concord ARGS` runs. */
function traced(store, args) {
  const out = concord(store, args, { node: ["--trace-wasm-compilation-times"] })
  return [...out.matchAll(/^Compiled function \S*#(\d+) using /gm)].map(m => Number(m[1]))
}

/**
 * Record both files, or take them from an earlier build of the very same inputs (the report bundle, the
 * command's entry and flags, this script, the Automerge WebAssembly, Node): a build runs several times in a
 * row (npm start, npm test, npm pack, the bench), and recording takes seconds. They are kept under
 * node_modules/.cache, which a fresh install empties.
 */
export async function recordLeanStartup() {
  const wasmFile = createRequire(import.meta.url).resolve("@automerge/automerge/automerge.wasm")
  const automerge = JSON.parse(readFileSync(path.join(path.dirname(wasmFile), "..", "package.json"), "utf8")).version
  const bytes = readFileSync(wasmFile)
  const inputs = createHash("sha256")
  for (const f of [
    path.join(ROOT, "dist", "cli", "lean.js"),
    path.join(ROOT, "dist", "cli", "lean-sync.js"),
    BIN,
    path.join(ROOT, "bin", "flags.js"),
    fileURLToPath(import.meta.url),
  ])
    inputs.update(readFileSync(f))
  inputs.update(bytes).update(`${automerge} ${process.version} ${process.arch}`)
  const saved = path.join(ROOT, "node_modules", ".cache", "concord-lean-startup", inputs.digest("hex"))
  const outputs = [OUT, CACHE, SYNC_CACHE]
  if (outputs.every(f => existsSync(path.join(saved, path.basename(f))))) {
    for (const f of outputs) copyFileSync(path.join(saved, path.basename(f)), f)
    return
  }
  await record(automerge, bytes)
  try {
    mkdirSync(saved, { recursive: true })
    for (const f of outputs) if (existsSync(f)) copyFileSync(f, path.join(saved, path.basename(f)))
  } catch {
    // kept for next time only
  }
}

async function record(automerge, bytes) {
  // the reports below must compile lazily, as without the hints
  rmSync(OUT, { force: true })
  rmSync(CACHE, { force: true })
  rmSync(SYNC_CACHE, { force: true })
  const { imports, functions, codeAt, end } = wasmLayout(bytes)
  const store = mkdtempSync(path.join(os.tmpdir(), "concord-lean-startup-"))
  try {
    writeFileSync(
      path.join(store, "plan.yaml"),
      "name: startup\njobs:\n  - { name: a, run: 'true' }\n  - { name: b, run: 'true' }\n  - { name: c, run: 'true' }\n  - { name: d, run: 'true' }\n"
    )
    const plan = concord(store, ["plan", "create", "plan.yaml"]).match(/^[1-9A-HJ-NP-Za-km-z]{20,}$/m)?.[0]
    if (!plan) throw new Error("plan create printed no plan id")
    // Per function, which reports call it: 1 every report (a job's first report creates its log; later
    // ones, on a long log, one naming its attempt, --json), 2 a report that moves the job's status (completed, failed).
    // bin/concord.js compiles ahead what the report it runs calls.
    const classes = Buffer.alloc(functions)
    // job d's log with 80 reports (written here through the store): compacted into a snapshot and grown
    // past the sizes at which Automerge's sorts, tables and trees take code paths a young log never calls
    const { PlanStore } = await import(pathToFileURL(path.join(ROOT, "dist", "src", "sync", "store", "PlanStore.js")).href)
    const writer = new PlanStore(store)
    for (let i = 0; i < 80; i++) {
      await writer.appendReport(plan, "d", { status: "progress", message: `step ${i}`, progress: i % 100, attempt: 1 }, { by: "build", now: Date.now() })
    }
    await writer.close()
    const runs = [
      [1, ["report", "working", "first", "--job", "a"]],
      [1, ["report", "progress", "half", "--progress", "50", "--job", "a"]],
      [1, ["report", "progress", "again", "--job", "a", "--attempt", "1", "--json"]],
      [1, ["report", "progress", "on a long log", "--job", "d"]],
      [2, ["report", "completed", "done", "--job", "a"]],
      [2, ["report", "failed", "broke", "--job", "b"]],
    ]
    for (const [bit, args] of runs) {
      for (const f of traced(store, [...args, "--plan", plan])) if (f >= imports && f - imports < functions) classes[f - imports] |= bit
    }
    // 4: what one-shot syncs call (with a sync server run here), the first pushing the plan
    let server
    try {
      server = await startSyncServer(`${store}-server`)
      for (const f of await syncTraced(store, plan, server)) if (f >= imports && f - imports < functions) classes[f - imports] |= 4
    } catch (e) {
      process.stderr.write(`lean-startup: ${e.message}\n`)
    }
    // 8: compiled ahead with the optimizing compiler (see the top of this file)
    const optimized = namedFunctions(bytes, OPTIMIZE_AHEAD).filter(f => f >= imports && f - imports < functions)
    for (const f of optimized) classes[f - imports] |= 8
    if (optimized.length === 0) process.stderr.write("lean-startup: no SHA-256 function named in Automerge's WebAssembly; none is optimized ahead\n")
    const eager = classes.filter(c => c !== 0).length
    if (eager === 0) {
      process.stderr.write("lean-startup: V8 named no compiled function; concord report compiles Automerge's WebAssembly lazily\n")
    } else {
      const v8 = process.versions.v8.split(".").slice(0, 2).join(".")
      const head = hintsHead(functions).toString("base64")
      const hints = { v8, automerge, size: bytes.length, at: codeAt, end, eager, head, classes: classes.toString("base64") }
      writeFileSync(OUT, `${JSON.stringify(hints)}\n`)
    }
    // the code cache, after a report that moves its job (so the status change's code is in it too)
    concord(store, ["report", "completed", "done", "--job", "c", "--plan", plan], { env: { CONCORD_WRITE_CODE_CACHE: "1" } })
    if (!existsSync(CACHE)) process.stderr.write("lean-startup: no code cache was written; concord report compiles its bundle at start-up\n")
    // the sync bundle's code cache, after a sync that pulls what the server's side wrote
    try {
      if (!server) throw new Error("no sync server")
      await server.sync(store, { CONCORD_WRITE_CODE_CACHE: "1" }, () => reportThere(server, plan, "again from the server"))
    } catch (e) {
      process.stderr.write(`lean-startup: ${e.message}\n`)
    } finally {
      await server?.close()
    }
    if (!existsSync(SYNC_CACHE)) process.stderr.write("lean-startup: no code cache of the sync bundle was written; concord sync compiles it at start-up\n")
  } finally {
    rmSync(store, { recursive: true, force: true })
    rmSync(`${store}-server`, { recursive: true, force: true })
  }
}

/**
 * A sync server (in this process) over the store `dir`, with an admin token: `sync(store, env, before?,
 * node?)` runs a one-shot `concord sync` of a store with it (after `before`), returning what it printed.
 */
async function startSyncServer(dir) {
  const dist = f => import(pathToFileURL(path.join(ROOT, "dist", "src", ...f.split("/"))).href)
  const [{ SyncServer }, { addToken, defaultTokensFile }, { PlanStore }] = await Promise.all([
    dist("sync/net/server.js"),
    dist("sync/net/tokens.js"),
    dist("sync/store/PlanStore.js"),
  ])
  const { secret } = await addToken(defaultTokensFile(dir), { plans: ["*"], role: "admin" })
  const server = new SyncServer({ storeDir: dir, host: "127.0.0.1", port: 0, log: () => {} })
  const { url } = await server.start()
  return {
    dir,
    PlanStore,
    close: () => server.close(),
    sync: async (at, env = {}, before = async () => {}, node = []) => {
      await before()
      const r = await concordAsync(at, ["sync", url, "--token", secret, "--quiet"], env, node)
      if (r.code !== 0) throw new Error(`concord sync exited ${r.code}: ${r.stderr}`)
      return r.stdout
    },
  }
}

/** A report written on the server's side, for the next sync to pull. */
async function reportThere(server, plan, message) {
  const there = new server.PlanStore(server.dir)
  await there.appendReport(plan, "b", { status: "progress", message, progress: 1, attempt: 1 }, { by: "build", now: Date.now() })
  await there.close()
}

/**
 * The function indices V8 reports compiling while one-shot syncs run: the first (the plan new there), one
 * after a report here (a push), one after a report there (a pull).
 */
async function syncTraced(store, plan, server) {
  const trace = ["--trace-wasm-compilation-times"]
  const out = [await server.sync(store, {}, undefined, trace)]
  out.push(await server.sync(store, {}, async () => concord(store, ["report", "progress", "synced", "--job", "b", "--plan", plan]), trace))
  out.push(await server.sync(store, {}, () => reportThere(server, plan, "from the server"), trace))
  return out.flatMap(o => [...o.matchAll(/^Compiled function \S*#(\d+) using /gm)].map(m => Number(m[1])))
}

/** `concord ARGS` in `store` without blocking this process (a sync server runs in it): exit code, stdout, stderr. */
function concordAsync(store, args, env = {}, node = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...node, BIN, ...args], {
      cwd: store,
      env: { ...process.env, CONCORD_STORE: store, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", d => (stdout += d))
    child.stderr.on("data", d => (stderr += d))
    child.on("error", reject)
    child.on("close", code => resolve({ code, stdout, stderr }))
  })
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await recordLeanStartup()
