// concord's networked ways (src/sync/net/), used by workloads 3 (visibility) and 6 (sync).
//
//   visibility["sync server (live session)"](cfg) / ["sync server (store to store)"](cfg) -> { lat, missed }
//   sync(changesPerPeer) -> { convergeMs, ok, detail }
//
// Everything runs as real OS processes: `concord serve`, `concord sync --watch`, bench workers.
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { DIST, ROOT } from "./concord.mjs"
import { sleep, startProcess, startWorker } from "./proc.mjs"
import { latencies } from "./stats.mjs"

const HERE = path.dirname(fileURLToPath(import.meta.url))
const NET_WATCHER = path.join(HERE, "net-watcher.mjs")
const BIN = path.join(ROOT, "bin/concord.js")

/** Ways the issue names that concord does not offer yet. */
export async function netStatus() {
  if (!existsSync(path.join(ROOT, "src/sync/net"))) {
    return { available: false, reason: "src/sync/net/ does not exist yet (the sync work is in progress elsewhere)" }
  }
  const testing = await import("./net-harness.mjs")
  try {
    await import(DIST)
  } catch (e) {
    return { available: false, reason: `${DIST} cannot be loaded (run npm run build): ${e.message}` }
  }
  return {
    available: true,
    async sync(n) {
      const r = await testing.benchOfflineConvergence({ changesPerPeer: n })
      return { convergeMs: r.convergeMs, ok: r.converged, detail: { syncMs: r.syncMs, serverChanges: r.serverChanges } }
    },
    visibility: {
      "sync server (live session)": cfg => viaServer(testing, cfg, "live"),
      "sync server (store to store)": cfg => viaServer(testing, cfg, "store"),
    },
  }
}

function spawnSyncWatch(store, url, token) {
  const child = spawn(process.execPath, [BIN, "sync", url, "--token", token, "--watch", "--quiet"], {
    cwd: store,
    env: { ...process.env, CONCORD_STORE: store },
    stdio: ["ignore", "ignore", "pipe"],
  })
  let stderr = ""
  child.stderr.on("data", d => (stderr = (stderr + d).slice(-4000)))
  const exited = new Promise(r => child.on("exit", (code, signal) => r({ code, signal })))
  return {
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000)
      await exited
      clearTimeout(t)
    },
  }
}

/**
 * A writer on store A (its `concord sync --watch` pushes to a `concord serve` process) and a watcher:
 *  live: a process holding a RemoteSession to the server, seeing the report log's handle change;
 *  store: store B kept in sync by its own `concord sync --watch`, watched with DocStore.watch.
 */
async function viaServer(testing, cfg, kind) {
  const root = mkdtempSync(path.join(os.tmpdir(), "concord-bench-net-"))
  const dirs = { server: path.join(root, "server"), a: path.join(root, "a"), b: path.join(root, "b") }
  const stop = [] // stopped in this order: watchers and sync clients first, the server last
  try {
    const token = await testing.addTokenCli(dirs.server, "*", "admin")
    const server = await testing.startServerProcess(dirs.server)
    stop.push({ stop: () => server.stop("SIGTERM") })
    const writer = await startWorker("concord", dirs.a)
    stop.unshift(writer)
    const plan = await writer.call("createPlan", { name: "visibility-net", jobs: ["j0"] })
    // the report log exists before the clock starts: discovering a new log is a separate (polled) path
    await writer.call("report", { plan, job: "j0", report: { status: "working", message: "warm-up" } })
    const first = await testing.runConcord(dirs.a, ["sync", server.url, "--token", token, "--quiet"])
    if (first.code !== 0) throw new Error(`concord sync (writer) failed: ${first.stderr}`)
    const syncA = spawnSyncWatch(dirs.a, server.url, token)
    stop.unshift(syncA)

    let watcher
    if (kind === "live") {
      watcher = await startProcess(NET_WATCHER, [server.url, token], "net watcher")
    } else {
      const r = await testing.runConcord(dirs.b, ["sync", server.url, "--token", token, "--quiet"])
      if (r.code !== 0) throw new Error(`concord sync (watcher) failed: ${r.stderr}`)
      const syncB = spawnSyncWatch(dirs.b, server.url, token)
      stop.unshift(syncB)
      watcher = await startWorker("concord", dirs.b)
    }
    stop.unshift(watcher)
    await watcher.call("watch", { plan, job: "j0", key: "w", pollMs: cfg.pollMs })
    // wait until the watcher sees the warm-up report: everything is connected
    const t0 = Date.now()
    for (;;) {
      const { seen } = await watcher.call("peek", { key: "w" })
      if (seen["warm-up"] !== undefined) break
      if (Date.now() - t0 > 30_000) throw new Error(`the ${kind} watcher never saw the warm-up report; sync --watch said: ${syncA.stderr()}`)
      await sleep(50)
    }
    // Warm the path itself before the clock starts. The warm-up report went by a one-shot sync, so no
    // process on the live path has yet run it: `sync --watch` merging a local write, the server judging
    // and applying a live change, the watcher applying it. Their first runs compile code (V8's JIT,
    // Automerge's WebAssembly on first call) and, measured, put a few hundred ms on the first reports
    // and on those queued behind them: a one-time start-up cost, not visibility. A few paced reports
    // through the whole path, seen by the watcher, then the measured ones.
    const warm = 10
    await writer.call("paced", { plan, job: "j0", n: warm, gapMs: cfg.gapMs, jitterMs: cfg.jitterMs, prefix: "warm-" })
    for (const t1 = Date.now(); ; ) {
      const { seen } = await watcher.call("peek", { key: "w" })
      if (seen[`warm-${warm - 1}`] !== undefined) break
      if (Date.now() - t1 > 30_000) throw new Error(`the ${kind} watcher never saw the warm-up reports`)
      await sleep(50)
    }
    await sleep(300)
    const { durable } = await writer.call("paced", { plan, job: "j0", n: cfg.reports, gapMs: cfg.gapMs, jitterMs: cfg.jitterMs })
    await sleep(Math.max(3 * cfg.pollMs, 2000))
    const { seen, source } = await watcher.call("unwatch", { key: "w" })
    if (process.env.NET_WATCHER_DEBUG) {
      process.stderr.write(`watcher stderr:\n${watcher.stderr}\nserver log:\n${server.logs()}\nsync A:\n${syncA.stderr()}\n`)
    }
    const { lat, missed } = latencies(durable, seen)
    // live session: which of its signals first showed each report (a handle event, or its 100 ms poll)
    const firstSeenBy = {}
    for (const [m, why] of Object.entries(source ?? {})) if (m.startsWith("v-")) firstSeenBy[why] = (firstSeenBy[why] ?? 0) + 1
    return { lat, missed, ...(source ? { firstSeenBy } : {}) }
  } finally {
    for (const s of stop) await s.stop().catch(() => {})
    rmSync(root, { recursive: true, force: true })
  }
}
