// Judging (wrong results, targets) and BENCHMARKS.md.
import { BASELINES } from "./backends.mjs"
import { description as concordDescription } from "./concord.mjs"

/** Backends that are meant to be right in each workload; a wrong result from them fails the run. */
const MUST_BE_RIGHT = {
  contention: new Set(["concord", "json-lock", "sqlite"]),
  founding: new Set(["concord", "sqlite", "json-lock (re-read under lock)"]),
}

export function judge(results) {
  const failures = [...results.errors]
  const w = results.workloads
  for (const r of w.contention?.rows ?? []) {
    if (r.lost > 0 && MUST_BE_RIGHT.contention.has(r.backend)) failures.push(`contention: ${r.backend} lost ${r.lost} of ${r.sent} reports at P=${r.P}`)
  }
  for (const r of w.founding?.rows ?? []) {
    if (r.wrong > 0 && MUST_BE_RIGHT.founding.has(r.variant)) failures.push(`founding race: ${r.variant} ended wrong in ${r.wrong} of ${r.rounds} rounds`)
  }
  for (const r of w.visibility?.rows ?? []) {
    if (r.missed > 0) failures.push(`visibility: the ${r.backend} watcher (${r.way}) never saw ${r.missed} of ${r.missed + r.n} reports`)
  }
  for (const r of w.dashboard?.rows ?? []) {
    if (r.missed > 0) failures.push(`dashboard: the page (${r.way}) never showed ${r.missed} reports, not even a later one`)
  }
  for (const e of [...(w.scale?.errors ?? []), ...(w.sync?.errors ?? [])]) failures.push(e)
  if (w.mcp?.lost > 0) failures.push(`mcp: ${w.mcp.lost} reports made through concord mcp are missing from the log`)
  for (const f of w.mcp?.fleet ?? []) if (f.lost > 0) failures.push(`mcp: ${f.backend} lost ${f.lost} of ${f.reports} reports`)
  return { failures, targets: targets(results) }
}

const fmt = (x, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? "n/a" : x >= 100 ? x.toFixed(0) : x.toFixed(d))
const ms = x => `${fmt(x)} ms`
/** a ÷ b; "n/a" when either is missing or b is not a positive measurement. */
const ratio = (a, b) => (a === null || b === null || a === undefined || b === undefined || !(b > 0) || !(a >= 0) ? "n/a" : `${(a / b).toFixed(2)}×`)

function targets(results) {
  const w = results.workloads
  const out = []
  const add = (target, status, detail) => out.push({ target, status, detail })
  const notRun = id => !w[id] || w[id].crashed

  // 1. zero lost / wrong for concord everywhere
  {
    const parts = []
    let bad = 0
    let measured = 0
    const c = (w.contention?.rows ?? []).filter(r => r.backend === "concord" || r.backend === "concord-endpoint")
    if (c.length) {
      measured++
      const lost = c.reduce((a, r) => a + r.lost, 0)
      bad += lost
      parts.push(`contention: ${lost} lost of ${c.reduce((a, r) => a + r.sent, 0)} at P = ${c.map(r => r.P).join(", ")}`)
    }
    const f = (w.founding?.rows ?? []).find(r => r.backend === "concord")
    if (f) {
      measured++
      bad += f.wrong
      parts.push(`founding race: ${f.wrong} wrong of ${f.rounds}`)
    }
    const v = (w.visibility?.rows ?? []).filter(r => r.backend === "concord" && !r.pending)
    if (v.length) {
      measured++
      const missed = v.reduce((a, r) => a + r.missed, 0)
      bad += missed
      parts.push(`visibility: ${missed} never seen`)
    }
    if (w.scale && !w.scale.crashed) {
      measured++
      const e = (w.scale.errors ?? []).filter(x => x.includes("concord"))
      const piped = e.filter(x => x.includes("through a pipe"))
      bad += e.length
      parts.push(
        `scale: ${e.length} wrong status outputs` +
          (piped.length
            ? ` (${piped.length} of them: \`concord status --json\` read through a pipe is cut short; the store and the same command writing to a file are right)`
            : "")
      )
    }
    add(
      "Zero lost updates and zero wrong final states for concord, every workload, every P",
      measured === 0 ? "not run" : bad ? "missed" : "met",
      parts.join("; ")
    )
  }
  // 2. contention at P = 16 vs json-lock, through the default path: the plan's local endpoint while an
  // orchestrator runs it (concord-endpoint); the store path without one is shown next to it
  {
    const rows = w.contention?.rows ?? []
    const e = rows.find(r => r.backend === "concord-endpoint" && r.P === 16)
    const c = rows.find(r => r.backend === "concord" && r.P === 16)
    const j = rows.find(r => r.backend === "json-lock" && r.P === 16)
    const s = rows.find(r => r.backend === "sqlite" && r.P === 16)
    const t = "Contention at P = 16 through the default path (the local endpoint of a running orchestrator): throughput ≥ 2× json-lock's and p99 ≤ json-lock's"
    if (!e || !j) add(t, "not run", notRun("contention") ? "contention not run" : "P = 16 is not part of this mode")
    else {
      const ok = e.throughput >= 2 * j.throughput && e.p99 <= j.p99
      add(
        t,
        ok ? "met" : "missed",
        `endpoint ${fmt(e.throughput)} reports/s vs json-lock ${fmt(j.throughput)} (${ratio(e.throughput, j.throughput)}); p99 ${ms(e.p99)} vs ${ms(j.p99)} (${ratio(e.p99, j.p99)})` +
          (c
            ? `; with no orchestrator (each process writes to the store) ${fmt(c.throughput)} reports/s (${ratio(c.throughput, j.throughput)}), p99 ${ms(c.p99)}`
            : "") +
          (s ? `; sqlite ${fmt(s.throughput)} reports/s (the endpoint reaches ${ratio(e.throughput, s.throughput)} of it)` : "")
      )
    }
  }
  // 3. visibility
  {
    const rows = w.visibility?.rows ?? []
    const s = rows.find(r => r.backend === "concord" && r.way === "store watch")
    if (!s) add("Visibility p99 < 250 ms through the store", "not run", "visibility not run")
    else add("Visibility p99 < 250 ms through the store", s.p99 < 250 ? "met" : "missed", `p99 ${ms(s.p99)} (p50 ${ms(s.p50)}, n = ${s.n})`)
    const ep = rows.find(r => r.backend === "concord" && r.way === "local endpoint" && !r.pending)
    if (ep)
      add(
        "Visibility p99 < 250 ms of a report made through a running orchestrator's local endpoint (watching the store)",
        ep.p99 < 250 ? "met" : "missed",
        `p99 ${ms(ep.p99)} (p50 ${ms(ep.p50)}, n = ${ep.n})`
      )
    const net = rows.filter(r => r.backend === "concord" && r.way.startsWith("sync server"))
    const measured = net.filter(r => !r.pending)
    const t = "Visibility through the sync server p99 < 50 ms"
    if (!rows.length) add(t, "not run", "visibility not run")
    else if (!measured.length) add(t, "pending", net[0]?.pending ?? "not measured")
    else {
      const best = measured.reduce((a, r) => (r.p99 < a.p99 ? r : a))
      add(t, best.p99 < 50 ? "met" : "missed", measured.map(r => `${r.way}: p99 ${ms(r.p99)}`).join("; "))
    }
  }
  // 4. report cost
  {
    const rows = w["report-cost"]?.rows ?? []
    const c = rows.find(r => r.command === "concord report")
    const o = rows.find(r => r.command === "concord report (orchestrator running)")
    const n = rows.find(r => r.command === 'node -e ""')
    const t = '`concord report` with no orchestrator running at most 2.5× `node -e ""`'
    if (!c || !n) add(t, "not run", "report cost not run")
    else add(t, c.p50 <= 2.5 * n.p50 ? "met" : "missed", `median ${ms(c.p50)} vs ${ms(n.p50)}: ${ratio(c.p50, n.p50)}`)
    const t2 = '`concord report` while an orchestrator runs the plan at most 1.5× `node -e ""`'
    if (!o || !n) add(t2, "not run", "report cost not run")
    else add(t2, o.p50 <= 1.5 * n.p50 ? "met" : "missed", `median ${ms(o.p50)} vs ${ms(n.p50)}: ${ratio(o.p50, n.p50)} (through its local endpoint)`)
  }
  // 4b. MCP: a job's agent reports while an orchestrator runs its plan (through the run's local
  // endpoint); the same server with no orchestrator (writing to the store) is shown next to it
  {
    const m = w.mcp
    const t = "A report through a long-lived MCP server: median < 5 ms, p99 < 20 ms (call to durable)"
    const e = m?.crashed ? undefined : m?.rows?.find(x => x.command.startsWith("mc_report") && x.command.includes("endpoint"))
    const r = m?.crashed ? undefined : m?.rows?.find(x => x.command === "mc_report via concord mcp (long-lived)")
    const cli = m?.rows?.find(x => x.command.startsWith("concord report"))
    const node = m?.rows?.find(x => x.command === 'node -e ""')
    if (!e && !r) add(t, "not run", m?.crashed ? "mcp crashed" : "mcp not run")
    else {
      const best = e ?? r
      add(
        t,
        best.p50 < 5 && best.p99 < 20 ? "met" : "missed",
        (e ? `orchestrator running (through its local endpoint): median ${ms(e.p50)}, p99 ${ms(e.p99)}; ` : "") +
          (r ? `no orchestrator (the server writes to the store): median ${ms(r.p50)}, p99 ${ms(r.p99)}, server CPU ${ms(r.cpuMsPerCall)} per report; ` : "") +
          `n = ${best.n}; in the same run \`concord report\` ${ms(cli?.p50)}, \`node -e ""\` ${ms(node?.p50)}`
      )
    }
    const t2 = "16 agents with their own MCP servers: nothing lost, throughput ≥ json-lock's"
    const fe = m?.fleet?.find(x => x.variant === "concord-endpoint")
    const fs = m?.fleet?.find(x => x.variant === "concord")
    const j = m?.fleet?.find(x => x.variant === "json-lock")
    const c = fe ?? fs
    if (!c || m.config.agents !== 16)
      add(t2, "not run", c ? `${m.config.agents} agents in this mode: lost ${(fe?.lost ?? 0) + (fs?.lost ?? 0)}` : "mcp not run")
    else {
      const lost = (fe?.lost ?? 0) + (fs?.lost ?? 0)
      add(
        t2,
        lost === 0 && (!j || c.throughput >= j.throughput) ? (j ? "met" : "met (no json-lock in this run)") : "missed",
        `lost ${lost} of ${(fe?.reports ?? 0) + (fs?.reports ?? 0)}; ` +
          (fe
            ? `orchestrator running (its local endpoint) ${fmt(fe.throughput)} reports/s${j ? ` (${ratio(fe.throughput, j.throughput)} json-lock's ${fmt(j.throughput)})` : ""}; `
            : "") +
          (fs ? `no orchestrator ${fmt(fs.throughput)} reports/s${j ? ` (${ratio(fs.throughput, j.throughput)})` : ""}` : "")
      )
    }
  }
  // 5. scale
  for (const [backend, how] of [
    ["concord", "written through the store"],
    ["concord-via-sync", "arriving by sync"],
  ]) {
    const t = `1,000 jobs after 100k reports ${how}: first \`concord status\` < 1 s and < 200 MB peak`
    const r = (w.scale?.rows ?? []).find(x => x.backend === backend && x.jobs === 1000 && x.reports === 100_000)
    if (!r) add(t, "not run", notRun("scale") ? "scale not run" : "this size is not part of this mode")
    else {
      const first = (r.statusFirstMs ?? r.statusMs) < 1000 && (r.peakRssFirstMB ?? r.peakRssMB) < 200
      const again = r.statusMs < 1000 && r.peakRssMB < 200
      add(
        t,
        first && again ? "met" : again ? "missed (met when repeated)" : "missed",
        r.statusFirstMs !== undefined
          ? `first status after the reports: ${ms(r.statusFirstMs)}, ${fmt(r.peakRssFirstMB)} MB peak; repeated: ${ms(r.statusMs)}, ${fmt(r.peakRssMB)} MB peak`
          : `${ms(r.statusMs)}, ${fmt(r.peakRssMB)} MB peak`
      )
    }
  }
  // 6. sync
  {
    const rows = w.sync?.rows ?? []
    const c = rows.find(r => r.kind === "concord" && r.changesPerPeer === 10_000)
    const ref = rows.find(r => r.kind === "reference" && r.changesPerPeer === 10_000)
    const refText = ref ? `; reference (Automerge sync protocol in one process, no network/disk): ${ms(ref.convergeMs)}` : ""
    const t = "10,000 offline changes per side converge in < 3 s"
    if (c && !c.pending) add(t, c.convergeMs < 3000 ? "met" : "missed", `${ms(c.convergeMs)}${refText}`)
    else if (c?.pending) add(t, "pending", `${c.pending}${refText}`)
    else add(t, rows.length ? "pending" : "not run", rows.length ? `not measured in this mode${refText}` : "sync not run")
  }
  // 7. dashboard
  {
    const T = "Dashboard: report durable -> visible in the page, p99 < 250 ms through `concord serve`"
    const rows = (w.dashboard?.rows ?? []).filter(r => !r.pending)
    const viaServer = rows.find(r => r.way === "agent via sync server")
    if (viaServer) add(T, viaServer.p99 < 250 ? "met" : "missed", rows.map(r => `${r.way}: p99 ${ms(r.p99)} (p50 ${ms(r.p50)})`).join("; "))
    else add(T, w.dashboard ? "pending" : "not run", w.dashboard?.rows?.[0]?.pending ?? "dashboard not run")
  }
  return out
}

function table(header, rows) {
  const esc = v => String(v ?? "").replace(/\|/g, "\\|")
  return [`| ${header.map(esc).join(" | ")} |`, `| ${header.map(() => "---").join(" | ")} |`, ...rows.map(r => `| ${r.map(esc).join(" | ")} |`)].join("\n")
}

const kib = b => (b >= 10 * 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 1024).toFixed(b < 10240 ? 1 : 0)} KiB`)

export function renderMarkdown(results, { charts, chartDir }) {
  const w = results.workloads
  const m = results.machine
  const baselines = BASELINES.filter(b => results.backends.ok.includes(b))
  const out = []
  const p = (...lines) => out.push(...lines, "")
  const chart = file => {
    const c = charts.find(x => x.file === file)
    if (c) p(`![${c.title}](${chartDir}/${c.file})`)
  }

  const remeasured = Object.values(results.workloads ?? {}).some(w => w?.measuredAt && w.measuredAt !== results.date)
  p(
    "# Benchmarks",
    `Generated by \`npm run bench\`${results.mode === "full" ? "" : ` (${results.mode} mode)`} on ${results.date.slice(0, 10)} ` +
      `(${results.date}); do not edit by hand: run it again. Every number below comes from this one run${remeasured ? " (except the workloads measured again later, named below)" : ""}, and every ratio is ` +
      `against a baseline measured in the same run on the same machine. The raw numbers are in ` +
      `\`${results.mode === "full" ? "bench/results.json" : "results.json"}\`; the harness is in \`bench/\`. ` +
      `Each workload starts after \`sync\` has written back what the previous one left (so its fsyncs do not queue behind another workload's files).`
  )
  // workloads measured again later (`--only ... --merge`): their numbers come from that run, said here
  const later = Object.entries(results.workloads ?? {}).filter(([, w]) => w?.measuredAt && w.measuredAt !== results.date)
  if (later.length) {
    p(
      `Measured again later, each in one \`--only ... --merge\` run of its own (its ratios are against baselines of that same run): ` +
        later.map(([id, w]) => `${id} (${w.measuredAt}${w.measuredOn ? `, concord commit ${w.measuredOn}` : ""})`).join(", ") +
        "."
    )
  }
  p("## Machine")
  p(
    table(
      ["", ""],
      [
        ["CPU", `${m.cpu}, ${m.cores} cores`],
        ["memory", `${m.memoryGiB} GiB`],
        ["OS", m.os],
        ["Node.js", m.node],
        ["file system of the stores", `${m.filesystem ?? "?"} (${m.tmpdir})`],
        ["Automerge", m.automerge],
        ["better-sqlite3", m.betterSqlite3 ?? "not installed"],
        ["proper-lockfile", m.properLockfile],
        ["concord commit", `${m.commit ?? "?"}${m.dirty ? " (with uncommitted changes in src/, bin/, scripts/, bench/ or package.json)" : ""}`],
        [
          "run time",
          `${results.seconds.toFixed(0)} s in all; ${Object.entries(w)
            .map(([k, v]) => `${k} ${v.seconds?.toFixed(0) ?? "?"} s`)
            .join(", ")}`,
        ],
      ]
    )
  )

  p("## Targets (issue 12)")
  p(
    table(
      ["target", "status", "measured"],
      results.targets.map(t => [t.target, t.status.toUpperCase(), t.detail])
    )
  )
  if (results.failures.length) {
    p("**Wrong results in this run** (the run exited non-zero):", ...results.failures.map(f => `- ${f}`))
  } else {
    p(
      "No wrong results from any backend that is meant to be right (concord, json-lock, sqlite; json-naive and json-lock's stale write are expected to lose updates, and their losses are counted below)."
    )
  }

  const fl = findings(results)
  if (fl.length) {
    p("## Findings")
    p("Read off this run's numbers (the sections below have the details and how each was measured).")
    p(...fl.map(x => `- ${x}`))
  }

  p("## Backends")
  p(
    table(
      ["backend", "what it is"],
      [
        ["concord", concordDescription],
        [
          "json-naive",
          "the plan in one JSON file; read-modify-write of the whole file, temp file + fsync + rename + fsync of the directory; an in-process mutex only (what the Mission Control plugin does today)",
        ],
        [
          "json-lock",
          "json-naive plus a cross-process lock file (proper-lockfile, mkdir lock, retries every 2-25 ms, randomised) around every read-modify-write, as Task Master does",
        ],
        [
          "sqlite",
          "better-sqlite3, WAL, synchronous=FULL, busy_timeout 10 s; one row per job and per report; each operation one BEGIN IMMEDIATE transaction touching only its rows",
        ],
      ].filter(([b]) => results.backends.ok.includes(b) || b === "sqlite")
    )
  )
  for (const [b, reason] of Object.entries(results.backends.skipped)) p(`**${b} was skipped in this run**: ${reason}. Its rows are missing below.`)
  p(
    'Every backend writes durably before a call returns (fsync, or SQLite\'s synchronous=FULL), so "latency" always means call to durable. ' +
      "Every process is a real OS process; the long-lived ones (bench/lib/worker.mjs) load their backend before the clock starts, so workloads 1-3 measure the operations, not Node start-up. Workload 4 measures start-up too."
  )

  // 1 contention
  const c = w.contention
  p("## 1. Contention")
  if (c?.crashed) p(`Crashed: \`${c.crashed.split("\n")[0]}\``)
  else if (c) {
    p(
      `P processes each send ${c.config.n} reports (status \`progress\`) for their own job of one plan, as fast as they can, all starting together. ` +
        `${c.config.reps} run(s) per cell, interleaved across backends; throughput is the median over runs of reports / (last finish - first start); ` +
        `latency percentiles pool every report of every run. For concord a report is what \`concord report\` does: load the plan to check the job, append to the job's report log. ` +
        `"CPU per report" is the user + system CPU time of the writer processes (process.cpuUsage) divided by the reports they sent: with 2 cores, throughput cannot exceed 2000 ms ÷ that, whatever the locking. ` +
        `concord-endpoint is concord with the plan's local endpoint served by a process of its own, as \`concord run\` serves it: its CPU is in the CPU per report, and also given alone ("endpoint"), since it serves every report from one thread.`
    )
    p(
      table(
        ["P", "backend", "reports/s", "p50 latency", "p90", "p99", "max", "lost updates", "CPU per report"],
        c.rows.map(r => [
          r.P,
          r.backend,
          fmt(r.throughput),
          ms(r.p50),
          ms(r.p90),
          ms(r.p99),
          ms(r.max),
          `${r.lost} of ${r.sent}`,
          r.cpuMsPerReport !== undefined
            ? ms(r.cpuMsPerReport) + (r.endpointCpuMsPerReport !== undefined ? ` (endpoint ${ms(r.endpointCpuMsPerReport)})` : "")
            : "",
        ])
      )
    )
    if (baselines.length) {
      p("Ratios, concord ÷ baseline (throughput: above 1 means concord is faster; p99: below 1 means concord is faster):")
      p(
        table(
          ["P", ...baselines.flatMap(b => [`throughput vs ${b}`, `p99 vs ${b}`])],
          c.config.ps.map(P => {
            const cc = c.rows.find(r => r.backend === "concord" && r.P === P)
            return [
              P,
              ...baselines.flatMap(b => {
                const x = c.rows.find(r => r.backend === b && r.P === P)
                return [ratio(cc?.throughput, x?.throughput), ratio(cc?.p99, x?.p99)]
              }),
            ]
          })
        )
      )
    }
    chart("contention-throughput.svg")
    chart("contention-p99.svg")
  }

  // 2 founding
  const f = w.founding
  p("## 2. The founding race")
  if (f?.crashed) p(`Crashed: \`${f.crashed.split("\n")[0]}\``)
  else if (f) {
    p(
      `Plan with jobs A, B, C, all running. An orchestrator process reads the plan, waits ${f.config.orchestratorDelayMs.join("-")} ms (uniform), then from that ` +
        `view marks A failed and pauses the plan at \`on_error\`; meanwhile two processes report B and C \`completed\` after ${f.config.reporterDelayMs.join("-")} ms. ` +
        `Right: A failed, B and C completed (and their reports kept), plan paused at on_error for A. ${f.config.rounds} rounds per backend, ` +
        `${f.config.concurrency} at a time, each on a new plan. concord uses its library as test/fixtures/plan-step.mjs does (the orchestrator saves ` +
        `the document it loaded, changed); the JSON baselines save the whole plan they read; sqlite updates the rows it changes. ` +
        `"json-lock (re-read under lock)" is the careful use of json-lock: the orchestrator re-reads the plan under the lock and applies its change to that. ` +
        `"orchestrator's write finished last" counts the rounds in which the stale write landed after both reports, where a whole-plan write from a stale view loses them.`
    )
    p(
      table(
        ["backend", "rounds", "wrong final states", "orchestrator's write finished last", "outcomes"],
        f.rows.map(r => [
          r.variant,
          r.rounds,
          r.wrong,
          r.orchestratorLast,
          Object.entries(r.outcomes)
            .sort((a, b) => b[1] - a[1])
            .map(([k, v]) => `${k}: ${v}`)
            .join("; "),
        ])
      )
    )
  }

  // 3 visibility
  const v = w.visibility
  p("## 3. Visibility")
  if (v?.crashed) p(`Crashed: \`${v.crashed.split("\n")[0]}\``)
  else if (v) {
    p(
      `A writer process makes ${v.config.reports} reports durable, ${v.config.gapMs}-${v.config.gapMs + v.config.jitterMs} ms apart; a long-running watcher process records when it first sees each. ` +
        `Latency = seen − durable (both from the machine's clock). Store watch: concord's DocStore.watch (fs.watch + a ${v.config.pollMs} ms poll, what \`concord status --watch\` uses); ` +
        `json: fs.watch on the plan's directory + the same poll, re-reading the file; sqlite: fs.watch on the database directory + the same poll, querying new rows (also 5 and 25 ms after each event, since the WAL is written before the commit is visible).`
    )
    const done = v.rows.filter(r => !r.pending)
    p(
      table(
        ["backend", "way", "n", "p50", "p90", "p99", "max", "never seen", "note"],
        done.map(r => [
          r.backend,
          r.way,
          r.n,
          ms(r.p50),
          ms(r.p90),
          ms(r.p99),
          ms(r.max),
          r.missed,
          r.firstSeenBy
            ? `first seen by: ${Object.entries(r.firstSeenBy)
                .map(([k, n]) => `${k} ${n}`)
                .join(", ")}`
            : "",
        ])
      )
    )
    if (done.some(r => r.way.startsWith("sync server"))) {
      p(
        "Sync server: `concord serve` on loopback; the writer's store is pushed by its own `concord sync --watch` process. *Live session*: the watcher is a process holding a " +
          "RemoteSession (automerge-repo with concord's client adapter) to the server, seeing the report log's handle change (its `heads-changed` event, with a 100 ms poll of the handle as a safety net; the note says which saw each report first). " +
          "*Store to store*: a second store kept up to date by its own `concord sync --watch`, watched with DocStore.watch as above. The report log exists and is synced before the clock starts, and 10 paced reports go through the whole path (seen by the watcher) before the measured ones, so that no process is measured running the path for the first time (compiling code)."
      )
    }
    if (done.some(r => r.min < 0))
      p("A negative latency means the watcher saw the report before the writer's call returned (after the rename, before the fsync of the directory finished).")
    const cs = done.find(r => r.backend === "concord" && r.way === "store watch")
    if (cs && baselines.length) {
      p("Ratios, concord store watch ÷ baseline (below 1: concord sees reports sooner):")
      p(
        table(
          ["baseline", "p50", "p99"],
          baselines.map(b => {
            const x = done.find(r => r.backend === b)
            return [b, ratio(cs.p50, x?.p50), ratio(cs.p99, x?.p99)]
          })
        )
      )
    }
    for (const r of v.rows.filter(r => r.pending)) p(`- concord, ${r.way}: **pending**: ${r.pending}.`)
  }

  // 4 report cost
  const rc = w["report-cost"]
  p("## 4. Report cost")
  if (rc?.crashed) p(`Crashed: \`${rc.crashed.split("\n")[0]}\``)
  else if (rc) {
    const node = rc.rows.find(r => r.command === 'node -e ""')
    const cr = rc.rows.find(r => r.command === "concord report")
    p(
      `Wall time of one process, spawn to exit, ${rc.config.runs} runs each after ${rc.config.warmup} warm-up runs, interleaved. ` +
        '`concord report progress MSG --job J --plan ID` against the floor `node -e ""` and against the same report by a one-shot process of each baseline (`node bench/baselines/cli.mjs BACKEND DIR report ...`).'
    )
    p(
      table(
        ["command", "n", "p50", "p90", "p99", "min", '÷ node -e ""', "concord ÷ this"],
        rc.rows.map(r => [r.command, r.n, ms(r.p50), ms(r.p90), ms(r.p99), ms(r.min), ratio(r.p50, node?.p50), ratio(cr?.p50, r.p50)])
      )
    )
    p("A report through a long-lived MCP server: see [8. MCP](#8-mcp).")
  }

  // 5 scale
  const s = w.scale
  p("## 5. Scale")
  if (s?.crashed) p(`Crashed: \`${s.crashed.split("\n")[0]}\``)
  else if (s) {
    const shown = [...new Set(s.rows.map(r => r.backend))]
    p(
      `Plans of ${s.config.jobs.join(", ")} jobs after ${s.config.totals.map(t => t.toLocaleString("en")).join(", ")} reports in all, spread evenly over the jobs. ` +
        `Store size is every file in the store directory. Status: one process, \`concord status ID --json\` (the baselines: \`bench/baselines/cli.mjs BACKEND DIR status ID\`, ` +
        `each job's status, report count and last report), ${s.config.statusRuns} runs (${s.config.slowStatusRuns ?? s.config.statusRuns} when the first takes over 3 s). ` +
        `"First status" is the first run after the reports were written (concord may then fill its caches); "repeated" is the median of the other runs, and its peak RSS the largest of them ` +
        `(process.resourceUsage().maxRSS at exit). Store size includes anything concord caches in the store. json-naive and json-lock write the same file, so the JSON format is measured once (as json-lock).`
    )
    p(
      "How the concord stores are filled: 100k reports through 100k `concord report` processes would take hours, so a generator process writes them " +
        "into the same documents (bench/lib/gen-scale.mjs, bench/lib/craft.mjs): each report is the Automerge change PlanStore.appendReport makes, encoded directly, by its own new actor " +
        "(as every `concord report` process has), stored through concord's own DocStore.save, which writes incremental chunks or compacts as in normal use."
    )
    if (s.fidelity) {
      const fr = s.fidelity
      p(
        `Check of that shortcut in this run: one generated change is ${fr.identicalChange ? "byte-identical to" : "**different from**"} the change PlanStore.appendReport makes for the same report, actor and time; ${fr.k} reports through the real path (PlanStore.appendReport, a new store object each) gave a ${fr.real.bytes}-byte document ` +
          `(${fr.real.actors} actors, loads in ${ms(fr.real.loadMs)}); ${fr.k} generated ones gave ${fr.built.bytes} bytes (${fr.built.actors} actors, ${ms(fr.built.loadMs)}): ` +
          `${ratio(fr.built.bytes, fr.real.bytes)} the size. The real path took ${(fr.realPathMs / 1000).toFixed(1)} s for ${fr.k} reports in one process.`
      )
    }
    for (const J of s.config.jobs) {
      p(`### ${J.toLocaleString("en")} jobs`)
      const rows = s.rows.filter(r => r.jobs === J)
      p(
        table(
          [
            "reports",
            "backend",
            "store size",
            "files",
            "first status: wall time",
            "first status: peak RSS",
            "repeated status: wall time",
            "repeated: peak RSS",
            "generated in",
          ],
          rows.map(r => [
            r.reports.toLocaleString("en"),
            r.backend,
            kib(r.bytes),
            r.files,
            ms(r.statusFirstMs),
            `${fmt(r.peakRssFirstMB)} MB`,
            ms(r.statusMs),
            `${fmt(r.peakRssMB)} MB`,
            `${r.genSeconds.toFixed(1)} s`,
          ])
        )
      )
      const sb = shown.filter(b => !b.startsWith("concord"))
      if (sb.length) {
        p(
          table(
            [
              "reports",
              ...sb.flatMap(b => [`first status time, concord ÷ ${b}`, `repeated status time ÷ ${b}`, `size ÷ ${b}`, `first status peak RSS ÷ ${b}`]),
            ],
            s.config.totals.map(T => {
              const cc = rows.find(r => r.backend === "concord" && r.reports === T)
              return [
                T.toLocaleString("en"),
                ...sb.flatMap(b => {
                  const x = rows.find(r => r.backend === b && r.reports === T)
                  return [
                    ratio(cc?.statusFirstMs, x?.statusFirstMs),
                    ratio(cc?.statusMs, x?.statusMs),
                    ratio(cc?.bytes, x?.bytes),
                    ratio(cc?.peakRssFirstMB, x?.peakRssFirstMB),
                  ]
                }),
              ]
            })
          )
        )
      }
    }
    if (s.fits?.length) {
      p("### How each grows")
      p(
        "Least-squares fit of y = c · T^k over the report totals (T) for each plan size: k ≈ 1 is linear growth, k ≈ 0 flat; the slope column is the added cost per extra report between the smallest and largest T."
      )
      const unit = { bytes: "bytes", statusMs: "ms", statusFirstMs: "ms", peakRssMB: "MB", peakRssFirstMB: "MB" }
      p(
        table(
          ["backend", "jobs", "metric", "exponent k", "R²", "slope per report"],
          s.fits.map(x => [x.backend, x.jobs, x.metric, x.exponent.toFixed(2), x.r2.toFixed(3), `${x.perReport.toPrecision(3)} ${unit[x.metric]}`])
        )
      )
    }
    chart("scale-status-time-first.svg")
    chart("scale-status-time.svg")
    chart("scale-peak-rss-first.svg")
    chart("scale-peak-rss.svg")
    chart("scale-store-size.svg")
  }

  // 6 sync
  const y = w.sync
  p("## 6. Sync")
  if (y?.crashed) p(`Crashed: \`${y.crashed.split("\n")[0]}\``)
  else if (y) {
    if (y.pending) p(`concord's sync: **pending**: ${y.pending}.`)
    else
      p(
        "concord: src/sync/net's `benchOfflineConvergence`: two stores share a plan through a `concord serve` process (loopback), each makes N changes offline " +
          "(half heartbeats on its own job in the plan document, half reports to its own job's log and to a log both write), then `concord sync` runs for A, B, A in turn; " +
          'the time to converge is those three runs, start-up of each process included, and "converged" means all three stores end with identical heads and every change. ' +
          "No baseline offers sync, so this workload has no ratios."
      )
    p(
      "Reference only, not concord's sync path: the Automerge sync protocol itself (generateSyncMessage / receiveSyncMessage) between two in-memory copies of one job's report log, " +
        `each with N offline reports (N changes by one actor per side), in one process with no network and no disk; a lower bound for a sync built on Automerge. Median of ${y.config.reps} run(s).`
    )
    p(
      table(
        ["changes per peer", "what", "time to converge", "detail", "converged"],
        y.rows.map(r => [
          r.changesPerPeer.toLocaleString("en"),
          r.kind === "reference" ? "reference (Automerge protocol, in process)" : "concord (3 × concord sync)",
          r.pending ? "pending" : ms(r.convergeMs),
          r.kind === "reference"
            ? `${r.rounds} rounds, ${kib(r.bytes)} exchanged`
            : r.detail
              ? `A push ${ms(r.detail.syncMs.aPush)}, B both ways ${ms(r.detail.syncMs.bBoth)}, A pull ${ms(r.detail.syncMs.aPull)}`
              : "",
          r.pending ? "" : r.ok ? "yes" : "NO",
        ])
      )
    )
    chart("sync-converge.svg")
  }

  // 7 dashboard
  const dsh = w.dashboard
  if (dsh) {
    p("## 7. Dashboard")
    if (dsh.crashed) p(`Crashed: \`${dsh.crashed.split("\n")[0]}\``)
    else {
      p(
        `\`concord serve\` (an OS process) serves the dashboard; headless Chromium (Debian's package, driven by playwright-core) shows it with a reader token. ${dsh.config.reports} reports are made durable one at a time, ` +
          `${dsh.config.gapMs}-${dsh.config.gapMs + dsh.config.jitterMs} ms apart; a MutationObserver in the page records when each report's text first appears (page and bench share the machine's clock). ` +
          "Latency = visible in the page − durable. *Agent via sync server*: the report is sent by a client session with a job token (as `concord report --remote`), durable when the server confirms it wrote it. " +
          "*Agent on the server's store*: a process writes the server's store directly (as `concord report` on that machine), durable when its chunk is fsynced. " +
          "The page is updated by server push (Server-Sent Events of `ops.watchStatus`), never by polling." +
          (dsh.measuredAt ? ` Measured ${dsh.measuredAt} (a later \`--only=dashboard\` run than the rest of this page).` : "")
      )
      const done = dsh.rows.filter(r => !r.pending)
      p(
        table(
          ["way", "n", "p50", "p90", "p99", "max", "overtaken", "never shown", "load average (1 min) before → after"],
          done.map(r => [
            r.way,
            r.n,
            ms(r.p50),
            ms(r.p90),
            ms(r.p99),
            ms(r.max),
            r.overtaken,
            r.missed,
            r.load1 ? `${fmt(r.load1[0])} → ${fmt(r.load1[1])}` : "not recorded",
          ])
        )
      )
      for (const r of dsh.rows.filter(x => x.pending)) p(`${r.way}: pending (${r.pending})`)
      if (done.some(r => r.min < 0))
        p(
          "A negative latency means the page showed the report before the writer's call returned (the server confirmation, or the report-digest cache update that follows the fsync, was still under way)."
        )
      p(
        "*Overtaken*: a report replaced by the next one before the page drew it (the page shows a job's latest report); *never shown*: neither it nor any later report appeared."
      )
    }
  }

  // 8 mcp
  const mc = w.mcp
  p("## 8. MCP")
  if (mc?.crashed) p(`Crashed: \`${mc.crashed.split("\n")[0]}\``)
  else if (mc) {
    p(
      "A job's agent reporting through a long-lived `concord mcp --store DIR --plan ID --job J --attempt 1` server (the arguments `concord run` writes into each attempt's MCP configuration), driven by the MCP SDK's own client over stdio: " +
        "`mc_report` timed from the call to the answer, which comes only after the report is durable (fsynced). " +
        `${mc.config.calls} calls after ${mc.config.warmup} warm-up calls, with \`concord report\` (one process per report, spawn to exit) and \`node -e ""\` interleaved ${mc.config.cli} times each. ` +
        "Server CPU is the server process's own user + system time per call (from /proc), which the machine's load does not inflate." +
        (mc.config.longLog
          ? ` The row with a long log reports, in turn with the others, to a second plan run by the same orchestrator, whose job's log already held ${mc.config.longLog.toLocaleString("en")} reports (crafted with bench/lib/craft.mjs, each the change a report makes): what a report costs once a job has reported all day.`
          : "")
    )
    p(
      table(
        ["how", "n", "p50", "p90", "p99", "max", "server CPU / report"],
        mc.rows.map(r => [r.command, r.n, ms(r.p50), ms(r.p90), ms(r.p99), ms(r.max), r.cpuMsPerCall != null ? ms(r.cpuMsPerCall) : ""])
      )
    )
    p(`Reports made through the server and missing from the log afterwards: ${mc.lost}.`)
    p(
      `${mc.config.agents} agents at once (16 in a full run), each with its own \`concord mcp\` server (one process each) on one store, each making ${mc.config.n} reports for its own job as fast as it can; ` +
        `against json-lock with ${mc.config.agents} processes making the same reports (bench/lib/worker.mjs \`burst\`), in the same run.`
    )
    p(
      table(
        ["who", "reports", "lost", "throughput", "p50", "p99"],
        mc.fleet.map(f => [f.backend, f.reports, f.lost, `${fmt(f.throughput)} /s`, ms(f.p50), ms(f.p99)])
      )
    )
  }

  p("## Caveats")
  p(
    "- One machine, one run: a 2-core VM whose neighbours are not under our control. Between runs, the longest measurements (status of the largest stores, sync of 10,000 changes) have varied by up to 2×; compare the ratios within one run rather than absolute numbers across runs.",
    "- Durability is the same everywhere (fsync or synchronous=FULL) on this machine's virtual disk, where an fsync is cheap; on a laptop SSD or a network disk fsync costs more, which narrows concord's gap to the baselines where they fsync as often.",
    "- The baselines are small and honest, not tuned products: json-lock's lock retries quickly (2-25 ms); with the common 100 ms minimum retry it would wait longer under contention. sqlite uses one connection per process and prepared statements.",
    "- concord's scale stores are filled by a generator (checked above), not by 100k CLI processes; reports are spread evenly over jobs, and every report is by a new actor, as with the CLI. A long-lived writer (an MCP server) that keeps its documents in memory could use one actor for many reports and make smaller, faster-loading logs."
  )
  p("## Repetitions and run time")
  const cfgs = Object.entries(w)
    .filter(([, v]) => v.config)
    .map(([k, v]) => `- ${k}: \`${JSON.stringify(v.config)}\`, ${v.seconds?.toFixed(0)} s`)
  p(...cfgs)
  return out.join("\n")
}

/** Short statements computed from the results: where each target stands and what the numbers show. */
function findings(results) {
  const w = results.workloads
  const out = []
  const row = (id, f) => (w[id]?.rows ?? []).find(f)
  // correctness
  {
    const c = w.contention?.rows ?? []
    const naive = c.filter(r => r.backend === "json-naive" && r.P > 1)
    const f = w.founding?.rows ?? []
    const parts = []
    const cc = c.filter(r => r.backend === "concord")
    if (cc.length)
      parts.push(
        `lost ${cc.reduce((a, r) => a + r.lost, 0)} of ${cc.reduce((a, r) => a + r.sent, 0)} reports in contention (P up to ${Math.max(...cc.map(r => r.P))})`
      )
    const fc = f.find(r => r.backend === "concord")
    if (fc) parts.push(`ended wrong in ${fc.wrong} of ${fc.rounds} founding-race rounds`)
    if (parts.length)
      out.push(
        `**Correctness.** concord ${parts.join("; ")}.` +
          (naive.length ? ` json-naive lost ${naive.map(r => `${r.lost} of ${r.sent} at P = ${r.P}`).join(", ")}.` : "") +
          (f.length
            ? ` Founding race wrong final states: ${f.map(r => `${r.variant} ${r.wrong}/${r.rounds}`).join(", ")}. A lock alone does not fix the founding bug: the orchestrator decides from a view it read earlier and saves that view; it takes a re-read under the lock (or row-level updates, as in sqlite) to get it right, while concord gets it right from the stale view.`
            : "")
      )
    const pipe = (w.scale?.errors ?? []).filter(x => x.includes("concord") && x.includes("through a pipe"))
    if (pipe.length) {
      const sizes = [...new Set(pipe.map(x => /J=(\d+)/.exec(x)?.[1]).filter(Boolean))].map(Number).map(n => n.toLocaleString("en"))
      out.push(
        `**A CLI bug found by this run.** \`concord status --json\` whose output goes to a pipe is cut short when the output is large (${pipe.length} case(s) here, at ${sizes.join(", ")} jobs: ` +
          `${(/\((\d+) bytes through the pipe, (\d+) written to a file/.exec(pipe[0]) ?? []).slice(1).join(" of ")} bytes arrived in the first), with exit code 0: the process exits before stdout drains. ` +
          "The same command writing to a file prints everything, and the store is right; the status timings below use a file."
      )
    }
  }
  // contention
  {
    const c16 = row("contention", r => r.backend === "concord" && r.P === 16)
    const e16 = row("contention", r => r.backend === "concord-endpoint" && r.P === 16)
    const j16 = row("contention", r => r.backend === "json-lock" && r.P === 16)
    const s16 = row("contention", r => r.backend === "sqlite" && r.P === 16)
    const c1 = row("contention", r => r.backend === "concord" && r.P === 1)
    if (e16 && j16) {
      const met = e16.throughput >= 2 * j16.throughput && e16.p99 <= j16.p99
      const ep = e16.endpointCpuMsPerReport
      out.push(
        `**Contention (P = 16 target ${met ? "met" : "missed"}).** Through a running orchestrator's endpoint, 16 processes reach ${fmt(e16.throughput)} reports/s against json-lock's ${fmt(j16.throughput)} (${ratio(e16.throughput, j16.throughput)}; target 2×)` +
          `${s16 ? ` and sqlite's ${fmt(s16.throughput)}` : ""}; p99 ${ms(e16.p99)} against ${ms(j16.p99)}. ` +
          `CPU per report, everything counted: ${ms(e16.cpuMsPerReport)}${ep !== undefined ? `, of which ${ms(ep)} in the endpoint's process, which serves every report from one JavaScript thread (the file system calls of its group commits run beside it, on a writer thread of their own and Node's thread pool), so the part of those ${ms(ep)} spent on that thread bounds the throughput by itself` : ""}. ` +
          (s16
            ? `To reach sqlite's ${fmt(s16.throughput)} reports/s on these 2 cores a report could cost at most ${ms(2000 / s16.throughput)} of CPU in all${ep !== undefined ? ` and ${ms(1000 / s16.throughput)} in the endpoint's thread` : ""}: ` +
              "today most of the endpoint's thread goes to Automerge's change of each report log (made on the log's Automerge backend, its JavaScript view brought up to date only when the log is read, so that this cost does not grow with the log), encoding its chunk, and JavaScript glue; the chunk files of all logs written in one turn are made durable together (each file and each directory fsynced once, off that thread), but every log is its own file in its own directory; sqlite appends a row to a shared WAL with one fsync per commit. "
            : "")
      )
    }
    if (c16 && j16) {
      out.push(
        `**Contention with no orchestrator.** Writing to the store directly, concord does ${fmt(c16.throughput)} reports/s at P = 16 (${ratio(c16.throughput, j16.throughput)} json-lock's), p99 ${ms(c16.p99)}. Its writers are CPU-bound: ${ms(c16.cpuMsPerReport)} of CPU per report at P = 16` +
          `${c1 ? ` (${ms(c1.cpuMsPerReport)} alone)` : ""}, against ${ms(j16.cpuMsPerReport)} for json-lock, so 2 cores cap it near ${fmt(2000 / c16.cpuMsPerReport)} reports/s. ` +
          "Each report loads the plan document and the job's whole report log from disk (every chunk read, checksummed and applied), appends one change and writes it with two fsyncs; json-lock rewrites one small file under a lock. " +
          "concord's processes never wait for each other (their p50 grows with P only through CPU sharing); json-lock's p50 stays low but its lock is unfair, which is where its p99 comes from."
      )
    }
  }
  // visibility
  {
    const sw = row("visibility", r => r.backend === "concord" && r.way === "store watch")
    const ep = row("visibility", r => r.backend === "concord" && r.way === "local endpoint")
    const live = row("visibility", r => r.backend === "concord" && r.way === "sync server (live session)")
    const s2s = row("visibility", r => r.backend === "concord" && r.way === "sync server (store to store)")
    if (sw) {
      out.push(
        `**Visibility.** Through the store, p99 ${ms(sw.p99)} (target < 250 ms: ${sw.p99 < 250 ? "met" : "missed"}).` +
          (ep ? ` A report made through a running orchestrator's local endpoint is seen by a store watcher with p99 ${ms(ep.p99)}.` : "") +
          (live
            ? ` Through the sync server with a live session, p50 ${ms(live.p50)}, p99 ${ms(live.p99)} (target < 50 ms: ${live.p99 < 50 ? "met" : "missed"}); the path is writer's store → its \`concord sync --watch\` (which notices the write through a file watch on the log's directories, reads the one new chunk file and applies it to its copy: no copy of the whole log, and nothing written back) → \`concord serve\` (which judges the change and appends it to its audit trail, one fsync, before its Repo applies it) → the watcher's session. automerge-repo (2.5) forwards a document's changes to its other peers at most once every 100 ms per Repo (DocSynchronizer.syncDebounceRate, a class field it gives no way to set), which with reports 40-100 ms apart, as here, alone kept the p99 above 100 ms; concord's sync clients and server forward each change at once instead, in one message per hop carrying it (src/sync/net/prompt.ts: the library is handed the peer's last sync message again and answers it from its sync state, where a restarted conversation took three messages), so what is left on the path is work rather than waiting: reading the new chunk, two messages, the server's judgment and fsync, Automerge applying the change in three processes, and each of the five processes getting the CPU (2 cores here).`
            : "") +
          (s2s ? ` Store to store through the server, p99 ${ms(s2s.p99)}.` : "")
      )
    }
  }
  // report cost
  {
    const node = row("report-cost", r => r.command === 'node -e ""')
    const rep = row("report-cost", r => r.command === "concord report")
    const help = row("report-cost", r => r.command === "concord --help")
    const lock = row("report-cost", r => r.command === "json-lock report")
    const served = row("report-cost", r => r.command === "concord report (orchestrator running)")
    if (node && rep) {
      out.push(
        `**Report cost.** With no orchestrator running, \`concord report\` takes ${ms(rep.p50)} (median), ${ratio(rep.p50, node.p50)} \`node -e ""\` (${ms(node.p50)}; target 2.5×: ${rep.p50 <= 2.5 * node.p50 ? "met" : "missed"}).` +
          (served
            ? ` While an orchestrator runs the plan it goes through its local endpoint from a lean start-up (no Automerge loaded): ${ms(served.p50)}, ${ratio(served.p50, node.p50)} (target 1.5×: ${served.p50 <= 1.5 * node.p50 ? "met" : "missed"}).`
            : "") +
          (help ? ` Loading the whole CLI (\`concord --help\`) takes ${ms(help.p50)}; a report does not load it.` : "") +
          (lock ? ` A one-shot json-lock report process takes ${ms(lock.p50)}.` : "") +
          " With no orchestrator the report starts lean: the report command alone, from V8's code cache of its bundle, with the WebAssembly functions a report calls compiled ahead on background threads (both recorded at build time); it starts as CommonJS (no ES module loader), lets V8 begin compiling the WebAssembly before it compiles its own bundle (the two overlap), and parses its words and reads the store's files with blocking calls while the WebAssembly compiles. What is left over bare Node is compiling those functions (on 2 cores the report still waits for part of it), the memory it touches for the first time (the WebAssembly's bytes, compiled code, V8's heap: each new page costs a page fault, several times bare Node's count), and the report itself with its two fsyncs. A report through a long-lived `concord mcp` server pays none of the start-up (see 8. MCP)."
      )
    }
  }
  // scale
  {
    const rows = w.scale?.rows ?? []
    const big = rows.find(r => r.backend === "concord" && r.jobs === 1000 && r.reports === 100_000)
    const worst = rows
      .filter(r => r.backend === "concord")
      .reduce((a, r) => (!a || (r.statusFirstMs ?? r.statusMs) > (a.statusFirstMs ?? a.statusMs) ? r : a), null)
    if (worst) {
      const first = x => x.statusFirstMs ?? x.statusMs
      const firstRss = x => x.peakRssFirstMB ?? x.peakRssMB
      const fitF = (w.scale.fits ?? []).filter(f => f.backend === "concord" && f.metric === "statusFirstMs")
      out.push(
        `**Scale.** ` +
          (big
            ? `1,000 jobs after 100k reports: the first \`concord status\` after the reports takes ${ms(first(big))} and ${fmt(firstRss(big))} MB; repeated, ${ms(big.statusMs)} and ${fmt(big.peakRssMB)} MB ` +
              `(target < 1 s and < 200 MB: ${first(big) < 1000 && firstRss(big) < 200 ? "met" : big.statusMs < 1000 && big.peakRssMB < 200 ? "met only when repeated" : "missed"}). `
            : "") +
          `The slowest first status measured is ${worst.jobs} jobs after ${worst.reports.toLocaleString("en")} reports: ${ms(first(worst))}, ${fmt(firstRss(worst))} MB peak. ` +
          (fitF.length ? `First-status time grows as T^k with k = ${fitF.map(f => `${f.exponent.toFixed(2)} (${f.jobs} jobs)`).join(", ")}. ` : "") +
          "Status reads no report log whose cached digest covers its chunk files (every writer keeps the digests current), so its time grows with the number of jobs, not of reports; a log the cache does not cover (written by a process that keeps no digests) is read, a few at a time, and freed after digesting."
      )
    }
  }
  // sync
  {
    const c = row("sync", r => r.kind === "concord" && r.changesPerPeer === 10_000)
    const ref = row("sync", r => r.kind === "reference" && r.changesPerPeer === 10_000)
    if (c && !c.pending) {
      out.push(
        `**Sync (target ${c.convergeMs < 3000 ? "met" : "missed"}).** 10,000 offline changes per peer converge in ${ms(c.convergeMs)} through three \`concord sync\` runs ` +
          `(A push ${ms(c.detail.syncMs.aPush)}, B both ways ${ms(c.detail.syncMs.bBoth)}, A pull ${ms(c.detail.syncMs.aPull)}); target 3 s.` +
          (ref
            ? ` The Automerge sync protocol alone, in memory, takes ${ms(ref.convergeMs)} for the same count (concord takes ${ratio(c.convergeMs, ref.convergeMs)} of it).`
            : "") +
          " A one-shot sync is one HTTP exchange (POST /v1/exchange): the changes the server lacks go up as one Automerge chunk per document, the changes the client lacks come back, with no Repo and no sync protocol on the client. A document unchanged since the last sync with that server (its chunk files are those recorded then) is not read at all, and one that is a single snapshot file goes up as that file. Each run starts lean (the sync command alone, from one script bundle and V8's code cache of it, the server's plan list asked for while Automerge's WebAssembly compiles, Automerge's SHA-256 compiled ahead with V8's optimizing compiler: hashing each change was most of the time a run spent loading its store). The server answers its plan list and the documents an exchange leaves unchanged from what it holds and a listing of chunk file names (no file read again), writes the audit records of all of an exchange's documents with one append and one fsync, and lists an admin's new changes for its audit trail from their change headers. A receiving client reads the reports it got with concord's own reader of Automerge's change format (Automerge's decodeChange for any change it does not fully read), to keep each log's cached digest current (so that status after a sync reads no log). What remains, by CPU profile: the server applies each side's changes to judge them (Automerge's loadIncremental: the most of it, slower for a server's first large exchange while V8 warms up, and for the concurrent appends of both sides to one report log, each of which Automerge places after the other side's), each side with changes of its own reads its copy once, and three process start-ups."
      )
    }
  }
  return out
}
