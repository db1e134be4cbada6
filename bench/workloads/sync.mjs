// Workload 6, sync: two peers with N offline changes each; time to converge after they connect.
// concord: src/sync/net's benchOfflineConvergence (through ../lib/net.mjs): two stores share a plan
// through a `concord serve` process, each makes N changes offline, then `concord sync` runs A, B, A;
// the time is those three runs, process start-up included.
//
// Also a reference that is NOT concord's sync path: the Automerge sync protocol itself
// (generateSyncMessage / receiveSyncMessage) between two in-memory copies of a report log, in one
// process, with no network and no disk. It is a lower bound for any sync built on Automerge.
import { performance } from "node:perf_hooks"
import { DIST } from "../lib/concord.mjs"
import { randomBytes } from "node:crypto"
import { reportLog } from "../lib/craft.mjs"
import { netStatus } from "../lib/net.mjs"
import { median } from "../lib/stats.mjs"

export const id = "sync"

export function config(quick) {
  return quick ? { changes: [100, 1000], reps: 1 } : { changes: [100, 1000, 10_000], reps: 3 }
}

/** Two copies of a report log that diverged by N reports each (one actor per side, as one offline process). */
async function diverged(N) {
  const c = await import(DIST)
  const A = await import("@automerge/automerge")
  const side = who => {
    const log = reportLog(A, c, "sync-plan", "job", { actor: randomBytes(16).toString("hex") })
    log.append(Array.from({ length: N }, (_, i) => ({ status: "progress", message: `${who} step ${i}`, progress: i % 101, by: `${who}@bench` })))
    return log.doc
  }
  return { A, left: side("left"), right: side("right") }
}

function referenceOnce(A, left, right, N) {
  const t0 = performance.now()
  let sl = A.initSyncState()
  let sr = A.initSyncState()
  let rounds = 0
  let bytes = 0
  for (;;) {
    rounds++
    let moved = false
    let m
    ;[sl, m] = A.generateSyncMessage(left, sl)
    if (m) {
      moved = true
      bytes += m.length
      ;[right, sr] = A.receiveSyncMessage(right, sr, m)
    }
    ;[sr, m] = A.generateSyncMessage(right, sr)
    if (m) {
      moved = true
      bytes += m.length
      ;[left, sl] = A.receiveSyncMessage(left, sl, m)
    }
    if (!moved || rounds > 1000) break
  }
  const ms = performance.now() - t0
  const same = JSON.stringify(A.getHeads(left).sort()) === JSON.stringify(A.getHeads(right).sort())
  const ok = same && left.reports.length === 2 * N && right.reports.length === 2 * N
  return { ms, rounds, bytes, ok }
}

export async function run({ quick, log }) {
  const cfg = config(quick)
  const net = await netStatus()
  const rows = []
  const errors = []
  for (const N of cfg.changes) {
    if (net.sync) {
      const r = await net.sync(N)
      rows.push({ kind: "concord", changesPerPeer: N, convergeMs: r.convergeMs, ok: r.ok, detail: r.detail })
      log(`sync concord N=${N}: ${r.convergeMs.toFixed(0)} ms (${JSON.stringify(r.detail.syncMs)}), converged ${r.ok}`)
      if (!r.ok) errors.push(`sync N=${N}: peers did not converge to the same state`)
    } else {
      rows.push({ kind: "concord", changesPerPeer: N, pending: net.reason })
    }
    const { A, left, right } = await diverged(N)
    const runs = []
    for (let i = 0; i < cfg.reps; i++) runs.push(referenceOnce(A, A.clone(left), A.clone(right), N))
    const row = {
      kind: "reference",
      changesPerPeer: N,
      convergeMs: median(runs.map(r => r.ms)),
      runs: runs.map(r => r.ms),
      rounds: runs[0].rounds,
      bytes: runs[0].bytes,
      ok: runs.every(r => r.ok),
    }
    if (!row.ok) errors.push(`sync reference N=${N}: copies differ after sync`)
    rows.push(row)
    log(`sync reference N=${N}: ${row.convergeMs.toFixed(0)} ms in ${row.rounds} rounds, ${(row.bytes / 1024).toFixed(0)} KiB`)
  }
  if (!net.sync) log(`sync concord: pending (${net.reason})`)
  return { config: cfg, rows, errors, pending: net.sync ? null : net.reason }
}
