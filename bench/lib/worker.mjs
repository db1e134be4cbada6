// A long-lived benchmark process: one backend client, driven by JSON lines on stdin
// ({id, op, args}), answering {id, ok, result | error} on stdout. Requests run concurrently.
//   node worker.mjs BACKEND DIR [OPTIONS_JSON]
import { serveOps } from "./serve-ops.mjs"
import { performance } from "node:perf_hooks"
import v8 from "node:v8"
import { loadBackend } from "./backends.mjs"

const [backendName, dir, optsJson] = process.argv.slice(2)
const { as, ...opts } = optsJson ? JSON.parse(optsJson) : {}
// A worker that stands in for a concord command (`as: "run"`: it serves a plan's endpoint, as `concord run`
// does) runs with the V8 flags bin/concord.js gives that command, set before Automerge is loaded.
if (as) for (const flag of (await import("../../bin/flags.js")).v8Flags([as])) v8.setFlagsFromString(flag)
if (as) await optimizeAheadAsBinDoes()
const backend = await loadBackend(backendName)
const client = await backend.open(dir, opts)
const stale = new Map()
const watchers = new Map()
const now = () => performance.timeOrigin + performance.now()
const sleep = ms => new Promise(r => setTimeout(r, ms))

const ops = {
  ping: async () => ({ pid: process.pid }),
  /** CPU this process has used so far (ms, user + system): for a process serving others (an endpoint). */
  cpu: async () => {
    const c = process.cpuUsage()
    return { cpuMs: (c.user + c.system) / 1000 }
  },
  createPlan: async a => client.createPlan(a),
  report: async a => client.report(a.plan, a.job, a.report),
  serveEndpoint: async a => client.serveEndpoint(a.plan),
  craftReports: async a => client.craftReports(a),
  read: async a => client.read(a.plan),
  /** Contention: n reports for one job as fast as possible, each timed from call to durable. */
  burst: async a => {
    const lat = []
    const via = {}
    const cpu0 = process.cpuUsage()
    const start = now()
    for (let i = 0; i < a.n; i++) {
      const t0 = now()
      const r = await client.report(a.plan, a.job, { status: "progress", message: `${a.job}-${i}`, progress: i % 101 })
      lat.push(now() - t0)
      if (r?.via) via[r.via] = (via[r.via] ?? 0) + 1
    }
    const end = now()
    const cpu = process.cpuUsage(cpu0)
    return { start, end, lat, via, cpuMs: (cpu.user + cpu.system) / 1000 }
  },
  /** Founding race, orchestrator side: read the plan and keep that view. */
  loadStale: async a => {
    stale.set(a.key, await client.loadView(a.plan))
    return { at: now() }
  },
  failAndPause: async a => {
    const view = stale.get(a.key)
    stale.delete(a.key)
    if (a.delayMs) await sleep(a.delayMs)
    await client.failAndPauseFrom(a.plan, view, a.job)
    return { at: now() }
  },
  complete: async a => {
    if (a.delayMs) await sleep(a.delayMs)
    await client.report(a.plan, a.job, { status: "completed", message: `${a.job} done` })
    return { at: now() }
  },
  /** Visibility, writer side: n reports, `gapMs` apart, each stamped with the time it became durable. */
  paced: async a => {
    const durable = []
    const via = {}
    for (let i = 0; i < a.n; i++) {
      await sleep(a.gapMs + Math.random() * a.jitterMs)
      const r = await client.report(a.plan, a.job, { status: "progress", message: `${a.prefix ?? "v-"}${i}` })
      durable.push(now())
      if (r?.via) via[r.via] = (via[r.via] ?? 0) + 1
    }
    return { durable, via }
  },
  /** Visibility, watcher side: record when each message is first seen. */
  watch: async a => {
    const seen = {}
    const w = client.watchReports(
      a.plan,
      a.job,
      messages => {
        const t = now()
        for (const m of messages) if (!(m in seen)) seen[m] = t
      },
      a.pollMs
    )
    watchers.set(a.key, { w, seen })
    return { pid: process.pid }
  },
  peek: async a => ({ seen: watchers.get(a.key).seen }),
  unwatch: async a => {
    const { w, seen } = watchers.get(a.key)
    w.close()
    watchers.delete(a.key)
    return { seen }
  },
  exit: async () => {
    await client.close?.()
    setImmediate(() => process.exit(0))
    return {}
  },
}

serveOps(ops)

/**
 * What bin/concord.js does for a long-lived command's WebAssembly, before Automerge is loaded: Automerge's
 * SHA-256 (class 8 of dist/cli/wasm-hints.json) compiled ahead with V8's optimizing compiler, the other
 * functions as V8's flags say. Automerge's Node entry compiles its module itself (new WebAssembly.Module
 * of its bytes), so the module it makes gets the same compilation-hints section here. Without a usable
 * hints file, nothing changes (as in bin/concord.js).
 */
async function optimizeAheadAsBinDoes() {
  const { readFileSync } = await import("node:fs")
  let h
  try {
    h = JSON.parse(readFileSync(new URL("../../dist/cli/wasm-hints.json", import.meta.url), "utf8"))
  } catch {
    return
  }
  if (h.v8 !== process.versions.v8.split(".").slice(0, 2).join(".") || typeof h.head !== "string" || typeof h.classes !== "string") return
  const sec = Buffer.concat([Buffer.from(h.head, "base64"), Buffer.from(h.classes, "base64").map(c => (c & 8 ? 42 : 0))])
  v8.setFlagsFromString("--experimental-wasm-compilation-hints")
  const Module = WebAssembly.Module
  WebAssembly.Module = function HintedModule(bytes) {
    const b = Buffer.from(bytes.buffer ?? bytes, bytes.byteOffset ?? 0, bytes.byteLength)
    if (b.byteLength !== h.size || b[h.at] !== 10) return new Module(bytes)
    try {
      return new Module(Buffer.concat([b.subarray(0, h.at), sec, b.subarray(h.at, h.end)]))
    } catch {
      return new Module(bytes) // as bin/concord.js: the module as it is
    }
  }
}
