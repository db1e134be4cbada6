// Workload 2, the founding race: plan with jobs A, B, C all running. An orchestrator process reads the
// plan, then, from that (by then stale) view, marks A failed and pauses the plan at on_error, while two
// other processes report B and C completed. Right: A failed, B and C completed, plan paused at on_error
// for A. Every round is a new plan; rounds run `concurrency` at a time on one store per backend.
import { rmSync } from "node:fs"
import { startWorker, stopAll, tempDir } from "../lib/proc.mjs"

export const id = "founding"

export function config(quick) {
  return { rounds: quick ? 20 : 500, concurrency: 4, orchestratorDelayMs: [0, 80], reporterDelayMs: [0, 40] }
}

/** The variants measured: every backend, plus json-lock used carefully (re-read under the lock). */
export function variants(backends) {
  const out = backends.map(b => ({ name: b, backend: b }))
  const i = out.findIndex(v => v.backend === "json-lock")
  if (i >= 0) {
    out[i].name = "json-lock (stale write)"
    out.splice(i + 1, 0, { name: "json-lock (re-read under lock)", backend: "json-lock", opts: { reread: true } })
  }
  return out
}

const rand = ([lo, hi]) => lo + Math.floor(Math.random() * (hi - lo + 1))

function judge(final) {
  const wrong = []
  const s = j => final.jobs[j]?.status
  if (s("A") !== "failed") wrong.push(`A ${s("A")}`)
  if (s("B") !== "completed") wrong.push(`B ${s("B")}`)
  if (s("C") !== "completed") wrong.push(`C ${s("C")}`)
  if (final.status !== "paused") wrong.push(`plan ${final.status}`)
  if (final.checkpoint !== "on_error" || final.checkpointJob !== "A") wrong.push(`checkpoint ${final.checkpoint}/${final.checkpointJob}`)
  for (const j of ["B", "C"]) if (!(final.jobs[j]?.messages ?? []).includes(`${j} done`)) wrong.push(`${j} report lost`)
  return wrong
}

async function runVariant(v, cfg, log) {
  const dir = tempDir()
  const [orch, rB, rC] = await Promise.all([0, 1, 2].map(() => startWorker(v.backend, dir, v.opts)))
  const outcomes = {}
  let wrong = 0
  let orchestratorLast = 0
  const t0 = Date.now()
  try {
    let next = 0
    const lane = async () => {
      while (next < cfg.rounds) {
        const round = next++
        const plan = await orch.call("createPlan", { name: `founding-${round}`, jobs: ["A", "B", "C"] })
        const key = `r${round}`
        await orch.call("loadStale", { plan, key })
        const [o, b, c] = await Promise.all([
          orch.call("failAndPause", { plan, key, job: "A", delayMs: rand(cfg.orchestratorDelayMs) }),
          rB.call("complete", { plan, job: "B", delayMs: rand(cfg.reporterDelayMs) }),
          rC.call("complete", { plan, job: "C", delayMs: rand(cfg.reporterDelayMs) }),
        ])
        if (o.at > Math.max(b.at, c.at)) orchestratorLast++
        const final = await orch.call("read", { plan })
        const w = judge(final)
        const outcome = w.length ? w.join(", ") : "right"
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
        if (w.length) wrong++
      }
    }
    await Promise.all(Array.from({ length: cfg.concurrency }, lane))
  } finally {
    await stopAll([orch, rB, rC])
    rmSync(dir, { recursive: true, force: true })
  }
  const seconds = (Date.now() - t0) / 1000
  log(`founding ${v.name}: ${wrong}/${cfg.rounds} wrong final states (${seconds.toFixed(1)} s)`)
  return { variant: v.name, backend: v.backend, rounds: cfg.rounds, wrong, orchestratorLast, outcomes, seconds }
}

export async function run({ backends, quick, log }) {
  const cfg = config(quick)
  const rows = []
  for (const v of variants(backends)) rows.push(await runVariant(v, cfg, log))
  return { config: cfg, rows }
}
