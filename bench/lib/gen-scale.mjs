// Fills a store with a plan of J jobs and a given total of reports, for the scale workload. Long-lived
// (JSON lines on stdin, like worker.mjs) so that it can grow the same store 1k -> 10k -> 100k.
//   node gen-scale.mjs BACKEND DIR JOBS
//
// concord: 100k reports through 100k `concord report` processes would take hours, so this process
// writes them itself, into the same documents the CLI writes: each report is one Automerge change
// that appends one record to the job's report log, with its own new actor id (as every `concord
// report` process has: DocStore loads with a random actor) and the same fields, message and values
// as PlanStore.appendReport. The changes are built with Automerge.encodeChange, applied, and stored
// with the store's own DocStore.save, which writes incremental chunks or compacts as in normal use.
// `fidelity` checks the shortcut: K reports through the real PlanStore.appendReport path against K
// built ones, comparing document bytes and load time.
import readline from "node:readline"
import { randomBytes } from "node:crypto"
import { performance } from "node:perf_hooks"
import { loadBackend } from "./backends.mjs"
import { DIST } from "./concord.mjs"

const [backendName, dir, jobsArg] = process.argv.slice(2)
const J = Number(jobsArg)
const jobs = Array.from({ length: J }, (_, i) => `job-${String(i).padStart(4, "0")}`)
const now = () => performance.timeOrigin + performance.now()

export function reportFields(job, i) {
  return {
    status: i % 10 === 0 ? "working" : "progress",
    message: `step ${i}: editing src/module-${i % 50}.ts and running its tests`,
    progress: i % 101,
    by: `job:${job}#1@build-host:${10000 + (i % 50000)}`,
  }
}

/** How many reports job k has when the plan has `total` in all (spread evenly). */
const share = (total, k) => Math.floor(total / J) + (k < total % J ? 1 : 0)

async function concordGenerator() {
  const c = await import(DIST)
  const A = await import("@automerge/automerge")
  const store = new c.PlanStore(dir, { onWarning: m => process.stderr.write(`concord warning: ${m}\n`) })
  const ctx = by => ({ by, now: Date.now() })
  let plan
  const state = new Map()

  function genesisState(job) {
    const doc = A.clone(c.reportsGenesis(plan, job))
    const [change] = A.getAllChanges(doc).map(A.decodeChange)
    const idx = change.ops.findIndex(o => o.action === "makeList" && o.key === "reports")
    if (idx < 0) throw new Error("report log genesis has no reports list: the generator no longer matches src/doc/reports.ts")
    return {
      docId: c.reportDocId(plan, job),
      doc,
      list: `${change.startOp + idx}@${change.actor}`,
      prevElem: "_head",
      maxOp: change.startOp + change.ops.length - 1,
      dep: change.hash,
      count: 0,
    }
  }

  /** One report as the change PlanStore.appendReport makes, by a new actor. */
  function buildChange(st, job, i) {
    const f = reportFields(job, i)
    const actor = randomBytes(16).toString("hex")
    const at = Date.now()
    const startOp = st.maxOp + 1
    const obj = `${startOp}@${actor}`
    const pct = ` ${f.progress}%`
    const ops = [
      { action: "makeMap", obj: st.list, elemId: st.prevElem, insert: true, pred: [] },
      { action: "set", obj, key: "at", datatype: "int", value: at, pred: [] },
      { action: "set", obj, key: "attempt", datatype: "int", value: 1, pred: [] },
      { action: "set", obj, key: "by", value: f.by, pred: [] },
      { action: "set", obj, key: "message", value: f.message, pred: [] },
      { action: "set", obj, key: "progress", datatype: "int", value: f.progress, pred: [] },
      { action: "set", obj, key: "status", value: f.status, pred: [] },
    ]
    const bytes = A.encodeChange({
      actor,
      seq: 1,
      startOp,
      time: Math.floor(at / 1000),
      message: JSON.stringify({ by: f.by, at, did: `report ${f.status}${pct} for attempt 1` }),
      deps: [st.dep],
      ops,
    })
    st.dep = A.decodeChange(bytes).hash
    st.prevElem = obj
    st.maxOp = startOp + ops.length - 1
    return bytes
  }

  return {
    async init() {
      const spec = c.validatePlanSpec({ name: `scale-${J}`, maxParallel: Math.min(J, 256), jobs: jobs.map(j => ({ name: j, run: "true" })) })
      plan = (await store.createPlan(spec, dir, ctx("user@bench"))).id
      await store.updatePlan(plan, doc => {
        for (const j of jobs) doc = c.setJobStatus(doc, j, "running", { pid: 1000, startedAt: Date.now() }, ctx("orchestrator@bench:1"))
        return doc
      })
      for (const j of jobs) state.set(j, genesisState(j))
      return { plan }
    },
    async grow({ to }) {
      for (const [k, job] of jobs.entries()) {
        const st = state.get(job)
        const want = share(to, k)
        if (want <= st.count) continue
        const changes = []
        for (let i = st.count; i < want; i++) changes.push(buildChange(st, job, i))
        const [next] = A.applyChanges(st.doc, changes)
        st.doc = next
        st.count = want
        await store.docs.save(st.docId, st.doc)
      }
      return { total: to }
    },
    /** The last message each job should show. */
    expectLast({ to }) {
      const k = 0
      const n = share(to, k)
      return n > 0 ? { job: jobs[k], message: reportFields(jobs[k], n - 1).message } : null
    },
    async fidelity({ k }) {
      const spec = c.validatePlanSpec({ name: "fidelity", jobs: [{ name: "real", run: "true" }, { name: "built", run: "true" }] })
      const fplan = (await store.createPlan(spec, dir, ctx("user@bench"))).id
      const saved = plan
      plan = fplan
      const t0 = now()
      for (let i = 0; i < k; i++) {
        const f = reportFields("real", i)
        // a fresh PlanStore per report: a new process in real life, a new actor here
        await new c.PlanStore(dir).appendReport(fplan, "real", { status: f.status, message: f.message, progress: f.progress, attempt: 1 }, ctx(f.by))
      }
      const realMs = now() - t0
      const st = genesisState("built")
      const changes = []
      for (let i = 0; i < k; i++) changes.push(buildChange(st, "built", i))
      st.doc = A.applyChanges(st.doc, changes)[0]
      await store.docs.save(st.docId, st.doc)
      plan = saved
      const measure = async docId => {
        const t = now()
        const d = await new c.PlanStore(dir).docs.load(docId)
        const loadMs = now() - t
        return { bytes: A.save(d).length, changes: A.getAllChanges(d).length, reports: d.reports.length, actors: new Set(A.getAllChanges(d).map(x => A.decodeChange(x).actor)).size, loadMs }
      }
      return { k, realPathMs: realMs, real: await measure(c.reportDocId(fplan, "real")), built: await measure(st.docId) }
    },
  }
}

async function baselineGenerator() {
  const backend = await loadBackend(backendName)
  const client = await backend.open(dir)
  let plan
  let count = 0
  if (backendName === "sqlite") {
    const ins = client.db.prepare("INSERT INTO reports (plan, job, status, message, progress, at, by) VALUES (?, ?, ?, ?, ?, ?, ?)")
    return {
      async init() {
        plan = await client.createPlan({ name: `scale-${J}`, jobs })
        return { plan }
      },
      async grow({ to }) {
        // in report order, round robin over jobs, as they would arrive
        const per = jobs.map((_, k) => share(count, k))
        client.db.transaction(() => {
          for (let n = count; n < to; n++) {
            const k = n % J
            const i = per[k]++
            const f = reportFields(jobs[k], i)
            ins.run(plan, jobs[k], f.status, f.message, f.progress, Date.now(), f.by)
          }
        })()
        count = to
        return { total: to }
      },
    }
  }
  // json-naive / json-lock: the same file format
  const { planFile, readJson, writeJsonDurable } = await import("../baselines/json-file.mjs")
  return {
    async init() {
      plan = await client.createPlan({ name: `scale-${J}`, jobs })
      return { plan }
    },
    async grow({ to }) {
      const file = planFile(dir, plan)
      const p = await readJson(file)
      const per = jobs.map((_, k) => share(count, k))
      for (let n = count; n < to; n++) {
        const k = n % J
        const i = per[k]++
        const f = reportFields(jobs[k], i)
        p.jobs[jobs[k]].reports.push({ status: f.status, message: f.message, progress: f.progress, at: Date.now(), by: f.by })
      }
      await writeJsonDurable(file, p)
      count = to
      return { total: to }
    },
  }
}

const gen = backendName === "concord" ? await concordGenerator() : await baselineGenerator()
gen.expectLast ??= ({ to }) => {
  const n = share(to, 0)
  return n > 0 ? { job: jobs[0], message: reportFields(jobs[0], n - 1).message } : null
}
const send = obj => process.stdout.write(JSON.stringify(obj) + "\n")
readline.createInterface({ input: process.stdin }).on("line", line => {
  const msg = JSON.parse(line)
  if (msg.op === "exit") return void setImmediate(() => process.exit(0))
  const fn = gen[msg.op]
  if (!fn) return send({ id: msg.id, ok: false, error: `unknown op ${msg.op}` })
  Promise.resolve(fn(msg.args ?? {})).then(
    result => send({ id: msg.id, ok: true, result }),
    e => send({ id: msg.id, ok: false, error: String(e?.stack ?? e) })
  )
})
send({ id: 0, ok: true, result: { ready: true } })
