// Hostile input (fast-check): plan files (arbitrary YAML/JSON values, mutated real plan files, invalid
// UTF-8), job names, report messages (huge, binary, control characters), CLI arguments (the real binary)
// and sync frames (random WebSocket messages to a real `concord serve`). Nothing may crash; each bad
// input gets a clear error (no stack trace, exit 1 or 2) and nothing is written on refusal; human output
// never carries raw control characters.
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import fc from "fast-check"
import WebSocket from "ws"
import YAML from "yaml"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const BIN = path.join(ROOT, "bin/concord.js")
const lib = await import(path.join(ROOT, "dist/src/index.js"))
const { startServerProcess } = await import(path.join(ROOT, "test/helpers/processes.mjs"))

// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f\u0080-\u009f]/
const STACK = /\n\s+at |TypeError|RangeError|ReferenceError|SyntaxError: Unexpected|Unhandled|node:internal/

function cli(store, args, input) {
  return new Promise(resolve => {
    const env = { ...process.env, CONCORD_STORE: store }
    for (const k of Object.keys(env)) if (k.startsWith("CONCORD_") && k !== "CONCORD_STORE") delete env[k]
    const c = spawn(process.execPath, [BIN, ...args], { cwd: store, env, stdio: ["pipe", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    c.stdout.on("data", d => (stdout += d))
    c.stderr.on("data", d => (stderr += d))
    c.stdin.end(input ?? "")
    let timedOut = false
    const t = setTimeout(() => ((timedOut = true), c.kill("SIGKILL")), 180_000)
    c.on("close", (code, signal) => (clearTimeout(t), resolve({ code, signal, stdout, stderr, timedOut })))
  })
}

const nasty = fc.oneof(
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.constantFrom("\u001b[2J\u001b[H", "\u0000", "\u009b31m", "\r\n\r\n", "\u202e", "%s%n", "../../etc/passwd", "-h", "--", "automerge:", ""),
  fc.string({ unit: fc.constantFrom("\u001b", "\u0007", "\b", "\u0000", "a", "é", "\ud83d\ude00"), maxLength: 50 }),
  fc.nat({ max: 20_000 }).map(n => "x".repeat(n))
)

function fileCount(dir) {
  let n = 0
  const walk = d => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name === "cache" || e.name === ".tmp" || e.name === "logs") continue
      if (e.isDirectory()) walk(path.join(d, e.name))
      else n++
    }
  }
  walk(dir)
  return n
}

/** In-process: plan specs and job names. parsePlanSpec either returns a plan or throws a SpecError. */
export function fuzzPlanSpecs({ runs = 500 } = {}) {
  const violations = []
  const demo = readFileSync(path.join(ROOT, "examples/demo.yaml"), "utf8")
  const check = text => {
    try {
      lib.parsePlanSpec(text)
    } catch (e) {
      if (!(e instanceof lib.SpecError) && !(e instanceof lib.InputError)) {
        violations.push(`parsePlanSpec threw ${e?.constructor?.name}: ${String(e?.message).slice(0, 120)} for ${JSON.stringify(text).slice(0, 120)}`)
      } else if (!e.message) violations.push("SpecError without a message")
    }
  }
  const jobName = fc.oneof(fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/), nasty)
  const arbitraryPlan = fc.record(
    {
      name: fc.oneof(nasty, fc.anything()),
      mode: fc.oneof(fc.constantFrom("autopilot", "copilot", "supervisor"), fc.anything()),
      maxParallel: fc.oneof(fc.integer(), fc.double(), fc.anything()),
      jobs: fc.oneof(
        fc.array(fc.record({ name: jobName, run: fc.oneof(nasty, fc.anything()), dependsOn: fc.array(jobName, { maxLength: 3 }) }, { requiredKeys: [] }), {
          maxLength: 8,
        }),
        fc.anything()
      ),
    },
    { requiredKeys: [] }
  )
  fc.assert(
    fc.property(arbitraryPlan, fc.boolean(), (plan, asJson) => {
      let text
      try {
        text = asJson ? JSON.stringify(plan) : YAML.stringify(plan)
      } catch {
        return
      }
      if (text !== undefined) check(text)
    }),
    { numRuns: runs }
  )
  // mutated real plan files: flipped, inserted and deleted bytes (also invalid UTF-8)
  const bytes = Buffer.from(demo)
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom("set", "insert", "delete")), { minLength: 1, maxLength: 8 }),
      edits => {
        const b = [...bytes]
        for (const [pos, val, op] of edits) {
          const i = pos % (b.length + 1)
          if (op === "set") b[i] = val
          else if (op === "insert") b.splice(i, 0, val)
          else b.splice(i, 1)
        }
        check(Buffer.from(b).toString("utf8"))
      }
    ),
    { numRuns: runs }
  )
  // report validation: huge, binary, control characters
  fc.assert(
    fc.property(fc.string(), nasty, fc.oneof(fc.double(), fc.integer(), fc.constant(undefined)), (status, message, progress) => {
      try {
        lib.validateReport({ status, message, progress, attempt: 1 })
      } catch (e) {
        if (!(e instanceof lib.InputError)) violations.push(`validateReport threw ${e?.constructor?.name}: ${e?.message}`)
      }
    }),
    { numRuns: runs }
  )
  return { violations: [...new Set(violations)].slice(0, 20), runs: runs * 3 }
}

/** The real binary with hostile arguments and report messages. */
export async function fuzzCli({ runs = 12 } = {}) {
  const root = mkdtempSync(path.join(os.tmpdir(), "concord-fuzzcli-"))
  const store = path.join(root, "store")
  mkdirSync(store)
  writeFileSync(path.join(root, "plan.yaml"), `name: fuzz\njobs:\n  - { name: A, run: "true" }\n`)
  const created = await cli(store, ["plan", "create", path.join(root, "plan.yaml"), "--json"])
  const id = JSON.parse(created.stdout).id
  const violations = []
  const commands = ["plan", "status", "report", "history", "run", "approve", "cancel", "sync", "token", "doctor", "nonsense"]
  const flags = [
    "--json",
    "--watch",
    "--plan",
    "--job",
    "--progress",
    "--attempt",
    "--remote",
    "--token",
    "--retry",
    "--skip",
    "--checkpoint",
    "--store",
    "--fix",
    "--graph",
  ]
  const arg = fc.oneof(
    fc.constantFrom(...commands),
    fc.constantFrom(...flags),
    nasty.map(s => s.replace(/\u0000/g, "")),
    fc.constant(id)
  )
  const samples = fc.sample(fc.array(arg, { minLength: 1, maxLength: 5 }), runs)
  // always include hostile reports to the real plan, then a human status of it
  const messages = fc.sample(
    nasty.map(s => s.replace(/\u0000/g, "")),
    Math.max(3, Math.floor(runs / 3))
  )
  for (const m of messages) samples.push(["report", "progress", m, "--job", "A", "--plan", id])
  samples.push(["report", "progress", "\u001b[2J\u001b[31mred\u0007 bell\rCR", "--job", "A", "--plan", id])
  let ran = 0
  for (const args of samples) {
    // --watch would run forever and sync would dial out: not hostile input, skip those combinations
    if (args.includes("--watch") || args[0] === "run" || args[0] === "sync") continue
    const before = fileCount(store)
    const r = await cli(store, args)
    ran++
    const shown = JSON.stringify(args).slice(0, 160)
    if (r.timedOut) violations.push(`concord ${shown} did not finish within 180 s (load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores)`)
    else if (r.signal) violations.push(`concord ${shown} was killed by ${r.signal}`)
    else if (![0, 1, 2].includes(r.code)) violations.push(`concord ${shown} exited ${r.code}`)
    if (STACK.test(r.stderr)) violations.push(`concord ${shown} printed a stack trace: ${r.stderr.slice(0, 200)}`)
    if (r.code === 2 && fileCount(store) !== before) violations.push(`concord ${shown} was refused (exit 2) but wrote files`)
    if (RAW_CONTROL.test(r.stderr)) violations.push(`concord ${shown}: raw control characters on stderr`)
  }
  // human output of a plan whose reports carry control characters
  for (const args of [
    ["status", id],
    ["history", id],
    ["plan", "list"],
  ]) {
    const r = await cli(store, args)
    ran++
    if (r.code !== 0) violations.push(`concord ${args.join(" ")} failed: ${r.stderr.slice(0, 200)}`)
    if (RAW_CONTROL.test(r.stdout)) {
      const i = r.stdout.search(RAW_CONTROL)
      violations.push(`concord ${args[0]} printed a raw control character (U+${r.stdout.charCodeAt(i).toString(16).padStart(4, "0")}) from a report message`)
    }
  }
  rmSync(root, { recursive: true, force: true })
  return { violations: [...new Set(violations)], runs: ran }
}

/** Random WebSocket frames at a real server; it must survive and still serve a legitimate sync. */
export async function fuzzSyncFrames({ runs = 40 } = {}) {
  const root = mkdtempSync(path.join(os.tmpdir(), "concord-fuzzws-"))
  const S = path.join(root, "server")
  const M = path.join(root, "m")
  mkdirSync(S)
  mkdirSync(M)
  writeFileSync(path.join(root, "plan.yaml"), `name: ws\njobs:\n  - { name: A, run: "true" }\n`)
  const id = JSON.parse((await cli(S, ["plan", "create", path.join(root, "plan.yaml"), "--json"])).stdout).id
  const token = JSON.parse((await cli(S, ["token", "add", "--plan", id, "--role", "writer", "--json"])).stdout).token
  const server = await startServerProcess(S)
  const violations = []
  const frame = fc.oneof(
    fc.uint8Array({ maxLength: 4096 }),
    fc.string({ unit: "binary", maxLength: 500 }),
    fc.anything().map(v => {
      try {
        return JSON.stringify(v) ?? "null"
      } catch {
        return "{"
      }
    }),
    fc
      .record(
        {
          type: fc.constantFrom("join", "sync", "request", "ephemeral", "doc-unavailable", "leave"),
          senderId: fc.string(),
          targetId: fc.string(),
          documentId: fc.oneof(fc.constant(id), fc.string()),
          data: fc.uint8Array({ maxLength: 300 }),
        },
        { requiredKeys: [] }
      )
      .map(o => JSON.stringify(o))
  )
  const batches = fc.sample(fc.array(frame, { minLength: 1, maxLength: 6 }), runs)
  for (const batch of batches) {
    await new Promise(resolve => {
      const ws = new WebSocket(`${server.url}/?token=${encodeURIComponent(token)}`)
      const done = () => (clearTimeout(t), resolve())
      const t = setTimeout(() => (ws.terminate(), resolve()), 3000)
      ws.on("open", () => {
        for (const f of batch) {
          try {
            ws.send(f)
          } catch {}
        }
        setTimeout(() => ws.close(), 50)
      })
      ws.on("error", done)
      ws.on("close", done)
    })
  }
  if (server.proc.exitCode !== null) violations.push(`the server died (exit ${server.proc.exitCode}) under random frames: ${server.logs().slice(-300)}`)
  if (STACK.test(server.logs())) violations.push(`the server logged a stack trace: ${server.logs().match(/.*\n\s+at .*/)?.[0] ?? ""}`)
  const legit = await cli(M, ["sync", server.url, "--token", token, "--quiet"])
  if (legit.code !== 0) violations.push(`a legitimate sync failed after the fuzzing: ${legit.stderr.slice(0, 200)}`)
  await server.stop("SIGTERM")
  rmSync(root, { recursive: true, force: true })
  return { violations, runs: batches.length }
}

/**
 * Authenticated, well-framed CBOR messages with hostile contents: a proper `join`, then sync / request /
 * ephemeral messages whose documentId, senderId and data are random or damaged (a real sync message
 * with bytes flipped, truncated or random). The server must survive, log no stack trace, keep the plan
 * loadable, and still serve a legitimate sync.
 */
export async function fuzzCborFrames({ runs = 40 } = {}) {
  const { encodeFrame } = await import(path.join(ROOT, "dist/src/sync/net/protocol.js"))
  const A = await import("@automerge/automerge")
  const root = mkdtempSync(path.join(os.tmpdir(), "concord-fuzzcbor-"))
  const S = path.join(root, "server")
  const M = path.join(root, "m")
  mkdirSync(S)
  mkdirSync(M)
  writeFileSync(path.join(root, "plan.yaml"), `name: cbor\njobs:\n  - { name: A, run: "true" }\n`)
  const id = JSON.parse((await cli(S, ["plan", "create", path.join(root, "plan.yaml"), "--json"])).stdout).id
  const token = JSON.parse((await cli(S, ["token", "add", "--plan", id, "--role", "writer", "--json"])).stdout).token
  const server = await startServerProcess(S)
  const violations = []
  // a real sync message about the plan, to damage
  const doc = await new lib.PlanStore(S, { onWarning: () => {} }).docs.load(id)
  const [, real] = A.generateSyncMessage(doc, A.initSyncState())
  const damaged = fc.oneof(
    fc.uint8Array({ maxLength: 600 }),
    fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([i, b]) => {
      const c = Uint8Array.from(real)
      c[i % c.length] = b
      return c
    }),
    fc.nat().map(n => real.subarray(0, n % real.length)),
    fc.constant(real)
  )
  const docIds = fc.oneof(fc.constant(id), fc.constant(lib.reportDocId(id, "A")), fc.string({ maxLength: 40 }), fc.constant(`automerge:${id}`))
  const message = peer =>
    fc.record(
      {
        type: fc.constantFrom("sync", "request", "ephemeral", "doc-unavailable", "remote-heads-changed", "remote-subscription-change", "leave", "join"),
        senderId: fc.oneof(fc.constant(peer), fc.string({ maxLength: 20 })),
        targetId: fc.string({ maxLength: 20 }),
        documentId: docIds,
        data: damaged,
        count: fc.oneof(fc.integer(), fc.string()),
        sessionId: fc.string({ maxLength: 10 }),
      },
      { requiredKeys: ["type"] }
    )
  let n = 0
  for (let i = 0; i < runs; i++) {
    const peer = `fuzz-${process.pid}-${i}`
    const batch = fc.sample(fc.array(message(peer), { minLength: 1, maxLength: 8 }), 1)[0]
    n += batch.length
    await new Promise(resolve => {
      const ws = new WebSocket(`${server.url}/?token=${encodeURIComponent(token)}`)
      const done = () => (clearTimeout(t), resolve())
      const t = setTimeout(() => (ws.terminate(), resolve()), 3000)
      ws.on("open", () => {
        try {
          ws.send(encodeFrame({ type: "join", senderId: peer, peerMetadata: {}, supportedProtocolVersions: ["1"] }))
          for (const m of batch) ws.send(encodeFrame(m))
        } catch {}
        setTimeout(() => ws.close(), 150)
      })
      ws.on("message", () => {})
      ws.on("error", done)
      ws.on("close", done)
    })
  }
  if (server.proc.exitCode !== null) violations.push(`the server died (exit ${server.proc.exitCode}) under hostile CBOR messages: ${server.logs().slice(-300)}`)
  if (STACK.test(server.logs()))
    violations.push(
      `the server logged a stack trace: ${server.logs().match(/.*\n\s+at .*/)?.[0] ?? server.logs().match(/.*(TypeError|RangeError|Unhandled).*/)?.[0] ?? ""}`
    )
  const legit = await cli(M, ["sync", server.url, "--token", token, "--quiet"])
  if (legit.code !== 0) violations.push(`a legitimate sync failed after the hostile messages: ${legit.stderr.slice(0, 200)}`)
  const st = await cli(S, ["status", id, "--json"])
  if (st.code !== 0) violations.push(`the plan is no longer readable on the server after the hostile messages: ${st.stderr.slice(0, 200)}`)
  await server.stop("SIGTERM")
  rmSync(root, { recursive: true, force: true })
  return { violations, runs, messages: n }
}

/**
 * Hostile MCP tool arguments: one real `concord mcp` server (started for a job, so every tool is
 * available) driven by the MCP SDK's client over stdio; every tool is called with random arguments,
 * either arbitrary JSON or its own input shape filled with hostile values (huge, binary, control
 * characters, wrong types, out-of-range numbers). Checks: each call answers (a result or an MCP error,
 * never a hang or a dead server), no stack trace on the server's stderr or in the answer, no raw control
 * characters in the answer's text, nothing written to the store when the call was refused.
 */
export async function fuzzMcpTools({ runs = 60 } = {}) {
  const { Client } = await import("@modelcontextprotocol/sdk/client/index.js")
  const { StdioClientTransport, getDefaultEnvironment } = await import("@modelcontextprotocol/sdk/client/stdio.js")
  const root = mkdtempSync(path.join(os.tmpdir(), "concord-fuzzmcp-"))
  const store = path.join(root, "store")
  mkdirSync(store)
  writeFileSync(path.join(root, "plan.yaml"), `name: mcpfuzz\njobs:\n  - { name: A, run: "true" }\n  - { name: B, run: "true", dependsOn: [A] }\n`)
  const id = JSON.parse((await cli(store, ["plan", "create", path.join(root, "plan.yaml"), "--json"])).stdout).id
  const violations = []
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, "mcp", "--store", store, "--plan", id, "--job", "A", "--attempt", "1"],
    cwd: root,
    env: getDefaultEnvironment(),
    stderr: "pipe",
  })
  let err = ""
  transport.stderr?.on("data", d => (err += d))
  let closed = false
  const client = new Client({ name: "concord-chaos-fuzz", version: "1.0.0" })
  await client.connect(transport, { timeout: 120_000 })
  transport.onclose = () => (closed = true)
  const tools = (await client.listTools()).tools
  const hostile = fc.oneof(
    nasty,
    fc.constantFrom(id, "A", "B", "working", "progress", "completed", "failed", "blocked", "needs_review"),
    fc.double(),
    fc.integer(),
    fc.constantFrom(-1, 101, 1e308, Number.NaN, null, true),
    fc.array(fc.jsonValue(), { maxLength: 4 }),
    fc.jsonValue()
  )
  const argsFor = tool => {
    const props = Object.keys(tool.inputSchema?.properties ?? {})
    return fc.oneof(
      fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue(), { maxKeys: 5 }),
      fc.record(Object.fromEntries(props.map(p => [p, hostile])), { requiredKeys: [] })
    )
  }
  const calls = fc.sample(
    fc.constantFrom(...tools).chain(t => argsFor(t).map(a => [t.name, a])),
    runs
  )
  let ran = 0
  for (const [name, args] of calls) {
    if (closed) break
    const before = fileCount(store)
    const shown = `${name} ${JSON.stringify(args)?.slice(0, 120)}`
    let refused = false
    let text = ""
    try {
      const r = await client.callTool({ name, arguments: args }, undefined, { timeout: 120_000 })
      refused = !!r.isError
      text = (r.content ?? []).map(c => c.text ?? "").join("\n")
      if (refused && !text.trim()) violations.push(`${shown}: refused with an empty message`)
    } catch (e) {
      refused = true
      text = String(e?.message ?? e)
      if (/timed out|Request timed out/i.test(text)) violations.push(`${shown}: no answer within 120 s`)
      else if (closed || /closed/i.test(text)) violations.push(`${shown}: the MCP server died: ${text.slice(0, 200)}`)
    }
    ran++
    if (STACK.test(text)) violations.push(`${shown}: a stack trace in the answer: ${text.slice(0, 200)}`)
    if (RAW_CONTROL.test(text)) violations.push(`${shown}: raw control characters in the answer`)
    if (refused && fileCount(store) !== before) violations.push(`${shown}: refused but wrote files`)
  }
  if (STACK.test(err)) violations.push(`the MCP server printed a stack trace: ${err.slice(0, 300)}`)
  // still serving after all that
  if (!closed) {
    const r = await client
      .callTool({ name: "mc_status", arguments: { name: "A" } }, undefined, { timeout: 120_000 })
      .catch(e => ({ isError: true, content: [{ text: String(e) }] }))
    if (r.isError) violations.push(`mc_status failed after the fuzzing: ${r.content?.[0]?.text?.slice(0, 200)}`)
  }
  await client.close().catch(() => {})
  rmSync(root, { recursive: true, force: true })
  return { violations: [...new Set(violations)].slice(0, 20), runs: ran, tools: tools.length }
}
