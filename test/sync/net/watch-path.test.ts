/**
 * The path of a report through the sync server, with real processes: a writer (this process) makes
 * reports durable in store A; A's own `concord sync --watch` process pushes them to a `concord serve`
 * process; a live session (RemoteSession, as an orchestrator on another machine holds) sees them.
 *
 * What the path promises: each report is read from disk once (the new chunk file, not the document),
 * goes to the server and on to the live session at once (no poll on the way: the store watcher's poll
 * is 500 ms, the plan list's 2 s), and `sync --watch` writes nothing back into A's store that A has.
 */
import * as A from "@automerge/automerge"
import { existsSync, watch as fsWatch } from "node:fs"
import path from "node:path"
import { performance } from "node:perf_hooks"
import { afterAll, describe, expect, it } from "vitest"
import { reportDocId } from "../../../src/doc/ids.js"
import { readReports } from "../../../src/doc/reports.js"
import { RemoteSession } from "../../../src/sync/net/client.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { addTokenCli, createPlanCli, FOUNDING_PLAN, rm, spawnConcord, startServerProcess, tempRoot, until } from "./helpers.js"

const roots: string[] = []
afterAll(() => roots.forEach(rm))
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

describe("a report's path through sync --watch and concord serve", () => {
  it("reaches a live session at once (well under the polls), and sync --watch writes nothing back into the writer's store", async () => {
    const root = tempRoot()
    roots.push(root)
    const [a, s] = ["a", "server"].map(n => path.join(root, n))
    const id = await createPlanCli(a, FOUNDING_PLAN)
    const rid = reportDocId(id, "A")
    const writer = new PlanStore(a, { onWarning: () => {} })
    const report = (message: string) => writer.appendReport(id, "A", { status: "progress", message, attempt: 1 }, { by: "job:A#1@test", now: Date.now() })
    await report("before")
    const token = await addTokenCli(s, "*", "admin")
    const server = await startServerProcess(s)
    const watch = spawnConcord(a, ["sync", server.url, "--token", token, "--watch"], { timeoutMs: 120_000 })
    const session = await RemoteSession.open({ url: server.url, token, retry: true })
    try {
      await until("the report log on the server", async () => !!(await session.fetch(rid, 2000).catch(() => undefined)))
      const handle = session.handle(rid)!
      const seen = new Map<string, number>()
      const look = () => {
        const t = performance.now()
        for (const r of readReports(handle.doc() as never)) if (!seen.has(r.message)) seen.set(r.message, t)
      }
      handle.on("heads-changed", look)
      look()
      await until("the first report in the live session", () => seen.has("before"))
      // warm the path (first runs compile code), then measure
      await report("warm")
      await until("the warm-up report", () => seen.has("warm"))
      await sleep(300)

      // every chunk file that appears in A's store for the log, and the ones this writer wrote
      const docDir = path.join(a, rid.slice(0, 2), rid.slice(2))
      const appeared = new Map<string, number>()
      const fsWatchers = ["incremental", "snapshot"].map(t =>
        fsWatch(path.join(docDir, t), (_ev, name) => {
          // (a "rename" event is a file made or removed: removals by the writer's compactions are not counted)
          if (name && !String(name).startsWith(".") && existsSync(path.join(docDir, t, String(name)))) {
            appeared.set(`${t}/${name}`, (appeared.get(`${t}/${name}`) ?? 0) + 1)
          }
        })
      )
      const mine = new Set<string>()
      const save = writer.docs.adapter.save.bind(writer.docs.adapter)
      writer.docs.adapter.save = async (key, data, sha) => {
        mine.add(`${key[1]}/${key[2]}`)
        return save(key, data, sha)
      }
      const durable = new Map<string, number>()
      const n = 10
      for (let i = 0; i < n; i++) {
        await report(`m-${i}`)
        durable.set(`m-${i}`, performance.now())
        await sleep(200)
      }
      await until("every report in the live session", () => [...durable.keys()].every(m => seen.has(m)), 20_000, 20)
      const lat = [...durable].map(([m, t]) => seen.get(m)! - t).sort((x, y) => x - y)
      const median = lat[Math.floor(lat.length / 2)]
      // through a poll, a report would wait half the store watcher's 500 ms poll on average (and up to
      // the whole of it); at once, a few ms on an idle machine: the bounds are for a loaded one
      expect(median, `latencies ${lat.map(x => x.toFixed(1)).join(", ")}`).toBeLessThan(250)
      expect(lat.filter(x => x > 600).length, `latencies ${lat.map(x => x.toFixed(1)).join(", ")}`).toBeLessThanOrEqual(3)

      // A's store got the writer's chunk files only, each written once: sync --watch wrote nothing back (a
      // report costs one durable write, not two; the same change saved again is the same file, written over)
      await sleep(500) // sync --watch's saves would have happened by now
      for (const w of fsWatchers) w.close()
      expect(mine.size).toBeGreaterThanOrEqual(n)
      const foreign = [...appeared.keys()].filter(f => !mine.has(f))
      expect(foreign, `files not written by the writer: ${foreign.join(", ")}`).toEqual([])
      const again = [...appeared].filter(([, k]) => k > 1)
      expect(again, `files written more than once: ${again.map(([f, k]) => `${f} (${k})`).join(", ")}`).toEqual([])
      const own = await writer.loadReports(id, "A")
      expect(readReports(own as never).map(r => r.message)).toEqual(["before", "warm", ...durable.keys()])
      // the server has them durably, and exactly what A has
      const server2 = new PlanStore(s, { onWarning: () => {} })
      await until("the server's copy", async () => (await server2.loadReports(id, "A"))?.reports.length === n + 2)
      const onServer = await server2.loadReports(id, "A")
      expect(A.getHeads(onServer as never).sort()).toEqual(A.getHeads(own as never).sort())
    } finally {
      await session.close()
      watch.child.kill("SIGTERM")
      const w = await watch.done
      expect(w.code, w.stderr).toBe(0)
      await server.stop()
    }
  }, 120_000)
})
