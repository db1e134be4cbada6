// Visibility through the sync server, watcher side: a process connected to `concord serve` with a
// RemoteSession (automerge-repo + concord's client adapter), recording when each report of a job's
// log first appears in its copy. Speaks the worker protocol (see worker.mjs).
//   node net-watcher.mjs URL TOKEN
import path from "node:path"
import { serveOps } from "./serve-ops.mjs"
import { performance } from "node:perf_hooks"
import { ROOT } from "./concord.mjs"

const [url, token] = process.argv.slice(2)
const { RemoteSession } = await import(path.join(ROOT, "dist/src/sync/net/client.js"))
const { reportDocId, readReports } = await import(path.join(ROOT, "dist/src/index.js"))
const now = () => performance.timeOrigin + performance.now()
const debug = process.env.NET_WATCHER_DEBUG ? l => process.stderr.write(`${new Date().toISOString()} ${l}\n`) : undefined
const session = await RemoteSession.open({ url, token, retry: true, log: debug })
const watches = new Map()

const ops = {
  async watch(a) {
    const id = reportDocId(a.plan, a.job)
    const seen = {}
    let handle
    for (let i = 0; !handle; i++) {
      handle = await session.fetch(id, 10_000)
      if (!handle) {
        if (i > 100) throw new Error(`the server does not have ${id}`)
        await new Promise(r => setTimeout(r, 100))
      }
    }
    const source = {}
    const look = (why = "event") => {
      const t = now()
      for (const r of readReports(handle.doc())) if (!(r.message in seen)) (seen[r.message] = t), (source[r.message] = why)
    }
    const onChange = () => look("change")
    const onHeads = () => look("heads-changed")
    handle.on("change", onChange)
    handle.on("heads-changed", onHeads)
    const poll = setInterval(() => look("poll"), 100)
    look("initial")
    watches.set(a.key, { handle, onChange, onHeads, seen, source, poll })
    return {}
  },
  async peek(a) {
    return { seen: watches.get(a.key).seen }
  },
  async unwatch(a) {
    const w = watches.get(a.key)
    w.handle.off("change", w.onChange)
    w.handle.off("heads-changed", w.onHeads)
    clearInterval(w.poll)
    watches.delete(a.key)
    return { seen: w.seen, source: w.source }
  },
  async exit() {
    await session.close()
    setTimeout(() => process.exit(0), 50)
    return {}
  },
}

serveOps(ops)
