/// <reference lib="dom" />
/**
 * The dashboard page (bundled by esbuild into dist/dashboard/app.js). It only renders what the server
 * sends (StatusResult from ops.watchStatus, ops.history, ops.planAt) and posts decisions to the same
 * operations as `concord approve` / `cancel`. Every text that comes from a plan or a report is set with
 * textContent or as an SVG text node, never parsed as HTML: report messages are untrusted.
 */
import dagre from "@dagrejs/dagre"
import type { HistoryEntry } from "../../ops/history.js"
import type { AtResult } from "../../ops/at.js"
import type { StatusResult } from "../../ops/status.js"
import type { JobSummary, NextStep, PlanSummary } from "../../doc/summary.js"

const SVG = "http://www.w3.org/2000/svg"
const params = new URLSearchParams(location.search)
const token = params.get("token") ?? ""
let planRef = params.get("plan") ?? ""

interface Session {
  who: string
  role: string
  canAct: boolean
  plans: { id: string; name: string }[]
}

const state: {
  session: Session | null
  live: StatusResult | null
  history: HistoryEntry[]
  /** index into history when looking at the past, else null (live) */
  past: AtResult | null
  selected: string | null
  logJob: string | null
} = { session: null, live: null, history: [], past: null, selected: null, logJob: null }

// ------------------------------------------------------------------ tiny DOM helpers (text only)

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v)
  for (const c of children) if (c !== null) e.append(typeof c === "string" ? document.createTextNode(c) : c)
  return e
}

function svg(tag: string, attrs: Record<string, string | number> = {}): SVGElement {
  const e = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v))
  return e
}

function $(id: string): HTMLElement {
  return document.getElementById(id)!
}

function api(path: string, extra: Record<string, string> = {}): string {
  const q = new URLSearchParams({ ...(planRef ? { plan: planRef } : {}), ...extra })
  return `api/${path}${q.toString() ? `?${q}` : ""}`
}

async function getJson<T>(path: string, extra: Record<string, string> = {}): Promise<T> {
  const r = await fetch(api(path, extra), { headers: { authorization: `Bearer ${token}` } })
  const body = await r.json()
  if (!r.ok) throw new Error(body.error ?? `HTTP ${r.status}`)
  return body as T
}

function time(ms: number | null | undefined): string {
  if (!ms) return ""
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
}

function duration(ms: number | null): string {
  if (ms === null || ms === undefined) return ""
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
}

/** What a job shows besides its status word: stale, conflicted, skipped. */
function markers(j: JobSummary): string[] {
  const m: string[] = []
  if (j.stale) m.push("STALE")
  if (j.error === "process lost" || j.note === "process lost") m.push("LOST")
  if (j.skipped) m.push("skipped")
  if (j.conflicted.length) m.push("merged race")
  return m
}

// ------------------------------------------------------------------ rendering

function shown(): PlanSummary | null {
  return state.past ? state.past.summary : (state.live?.summary ?? null)
}

function render(): void {
  const s = shown()
  if (!s) return
  document.body.classList.toggle("past", !!state.past)
  $("plan-name").textContent = s.name
  const st = $("plan-status")
  st.textContent = s.status
  st.className = `badge st-${s.status}`
  $("plan-meta").textContent = `mode ${s.mode} · ${s.jobs.length} jobs · ${Object.entries(s.counts)
    .map(([k, v]) => `${v} ${k}`)
    .join(", ")}${s.lease ? ` · orchestrator ${s.lease.holder}` : ""}`
  $("past-banner").hidden = !state.past
  if (state.past) {
    const e = state.past.entry
    $("past-text").textContent = e
      ? `Viewing the plan as it was at ${new Date(e.at).toLocaleString()} — after "${e.did}" by ${e.by} (${state.past.included} of ${state.past.total} changes)`
      : "Viewing the plan before its first change"
  }
  renderCheckpoint(s, state.past ? [] : (state.live?.next ?? []))
  renderGraph(s)
  renderTable(s)
  renderDetails(s)
  renderWarnings()
}

function renderWarnings(): void {
  const w = state.live?.warnings ?? []
  const box = $("warnings")
  box.replaceChildren(...w.map(x => el("li", {}, x)))
  box.hidden = w.length === 0
}

function renderCheckpoint(s: PlanSummary, next: NextStep[]): void {
  const box = $("checkpoint")
  box.replaceChildren()
  if (!s.checkpoint) {
    box.hidden = true
    return
  }
  box.hidden = false
  box.append(el("h2", {}, `Checkpoint: ${s.checkpoint}`))
  const c = s.checkpointContext ?? {}
  const why: string[] = []
  if (typeof c.jobName === "string") why.push(`job ${c.jobName}${typeof c.attempt === "number" ? ` (attempt ${c.attempt})` : ""}`)
  if (typeof c.failureKind === "string") why.push(c.failureKind)
  if (typeof c.exitCode === "number") why.push(`exit code ${c.exitCode}`)
  if (typeof c.message === "string" && c.message) why.push(c.message)
  box.append(el("p", { class: "why" }, why.length ? `Why: ${why.join(" · ")}` : `The plan waits at ${s.checkpoint}.`))
  if (s.approvedBy) box.append(el("p", { class: "approved" }, `Approved by ${s.approvedBy}; the orchestrator acts on it when it runs.`))
  const can = !!state.session?.canAct && !state.past
  const buttons = el("div", { class: "buttons" })
  for (const n of next) {
    let label: string
    let body: Record<string, string>
    if (n.kind === "retry") (label = `Retry ${n.job}`), (body = { checkpoint: n.checkpoint, retry: n.job! })
    else if (n.kind === "skip") (label = `Skip ${n.job}`), (body = { checkpoint: n.checkpoint, skip: n.job! })
    else if (n.kind === "continue") (label = "Approve (go on without it)"), (body = { checkpoint: n.checkpoint })
    else (label = `Approve ${n.checkpoint}`), (body = { checkpoint: n.checkpoint })
    buttons.append(actionButton(label, "approve", body, can, n.kind))
  }
  box.append(buttons)
  if (!can && !state.past) box.append(el("p", { class: "muted" }, `Read-only: your token's role (${state.session?.role ?? "?"}) may not decide.`))
}

function actionButton(label: string, route: "approve" | "cancel", body: Record<string, string>, enabled: boolean, kind: string): HTMLButtonElement {
  const b = el("button", { type: "button", "data-action": kind, class: kind === "cancel" ? "danger" : "" }, label)
  b.disabled = !enabled
  if (!enabled) b.title = "your token may not make this decision"
  b.addEventListener("click", () => void act(route, body, b))
  return b
}

async function act(route: "approve" | "cancel", body: Record<string, string>, button: HTMLButtonElement): Promise<void> {
  if (route === "cancel" && !confirm("Cancel the plan and stop its jobs?")) return
  button.disabled = true
  const out = $("action-result")
  try {
    const r = await fetch(api(route), {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ plan: state.live?.summary.id ?? planRef, ...body }),
    })
    const res = await r.json()
    if (!r.ok) throw new Error(res.error ?? `HTTP ${r.status}`)
    out.textContent = (res.lines ?? [res.text]).join("\n")
    out.className = "ok"
  } catch (e) {
    out.textContent = `Refused: ${(e as Error).message}`
    out.className = "error"
  } finally {
    button.disabled = !state.session?.canAct
  }
}

function renderGraph(s: PlanSummary): void {
  const g = new dagre.graphlib.Graph()
  g.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 46, marginx: 8, marginy: 8 })
  g.setDefaultEdgeLabel(() => ({}))
  const W = 150
  const H = 66
  for (const j of s.jobs) g.setNode(j.name, { width: W, height: H })
  for (const j of s.jobs) for (const d of j.dependsOn) if (s.jobs.some(x => x.name === d)) g.setEdge(d, j.name)
  dagre.layout(g)
  const gw = g.graph().width ?? 300
  const gh = g.graph().height ?? 100
  const root = svg("svg", { viewBox: `0 0 ${gw} ${gh}`, role: "img", "aria-label": `dependency graph of ${s.name}`, width: "100%" })
  root.style.maxHeight = `${Math.max(gh, 120)}px`
  root.append(defs())
  for (const e of g.edges()) {
    const pts = g.edge(e).points ?? []
    const d = pts.map((p: { x: number; y: number }, i: number) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ")
    root.append(svg("path", { d, class: "edge", "marker-end": "url(#arrow)" }))
  }
  for (const j of s.jobs) {
    const n = g.node(j.name)
    const x = n.x - W / 2
    const y = n.y - H / 2
    const node = svg("g", {
      class: `node st-${j.status}${j.stale ? " stale" : ""}${state.selected === j.name ? " selected" : ""}`,
      "data-job": j.name,
      "data-status": j.status,
      tabindex: 0,
      role: "button",
    })
    node.append(svg("rect", { x, y, width: W, height: H, rx: 6, class: "box" }))
    node.append(svg("rect", { x, y, width: W, height: H, rx: 6, class: "pattern" }))
    const t1 = svg("text", { x: x + 8, y: y + 17, class: "name" })
    t1.textContent = j.name.length > 20 ? `${j.name.slice(0, 19)}…` : j.name
    const t2 = svg("text", { x: x + 8, y: y + 34, class: "status" })
    t2.textContent = `${j.status}${j.attempt > 1 ? ` · #${j.attempt}` : ""}`
    const mk = markers(j)
    const t3 = svg("text", { x: x + 8, y: y + 50, class: "mark" })
    t3.textContent = mk.join(" ")
    const title = svg("title")
    title.textContent = `${j.name}: ${j.status}, attempt ${j.attempt}${j.progress !== null ? `, ${j.progress}%` : ""}${mk.length ? ` (${mk.join(", ")})` : ""}`
    node.append(title, t1, t2, t3)
    if (j.progress !== null) {
      node.append(svg("rect", { x: x + 8, y: y + H - 10, width: W - 16, height: 5, class: "bar-bg" }))
      node.append(svg("rect", { x: x + 8, y: y + H - 10, width: ((W - 16) * Math.max(0, Math.min(100, j.progress))) / 100, height: 5, class: "bar" }))
      const pct = svg("text", { x: x + W - 8, y: y + 17, class: "pct", "text-anchor": "end" })
      pct.textContent = `${j.progress}%`
      node.append(pct)
    }
    const open = () => select(j.name)
    node.addEventListener("click", open)
    node.addEventListener("keydown", ev => ((ev as KeyboardEvent).key === "Enter" ? open() : undefined))
    root.append(node)
  }
  $("graph").replaceChildren(root)
}

function defs(): SVGElement {
  const d = svg("defs")
  const m = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" })
  m.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }))
  // patterns so that status does not rest on colour alone
  const hatch = svg("pattern", { id: "hatch", width: 8, height: 8, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" })
  hatch.append(svg("line", { x1: 0, y1: 0, x2: 0, y2: 8, class: "hatch" }))
  const dots = svg("pattern", { id: "dots", width: 8, height: 8, patternUnits: "userSpaceOnUse" })
  dots.append(svg("circle", { cx: 2, cy: 2, r: 1.2, class: "dot" }))
  d.append(m, hatch, dots)
  return d
}

function renderTable(s: PlanSummary): void {
  const rows = s.jobs.map(j => {
    const last = j.lastReport
    const tr = el(
      "tr",
      { "data-job": j.name, class: state.selected === j.name ? "selected" : "" },
      el("th", { scope: "row" }, el("button", { type: "button", class: "link" }, j.name)),
      el(
        "td",
        { "data-status": j.status },
        el("span", { class: `badge st-${j.status}` }, j.status),
        ...markers(j).map(m => el("span", { class: "marker" }, m))
      ),
      el("td", {}, String(j.attempt)),
      el("td", {}, j.progress !== null ? `${j.progress}%` : ""),
      el(
        "td",
        { class: "report" },
        last ? `${last.status}${last.message ? `: ${last.message}` : ""}` : "",
        last ? el("small", {}, ` ${time(last.at)} by ${last.by}`) : null
      ),
      el("td", {}, duration(j.durationMs)),
      el("td", {}, j.host ?? "")
    )
    tr.querySelector("button")!.addEventListener("click", () => select(j.name))
    return tr
  })
  $("jobs-body").replaceChildren(...rows)
}

function renderDetails(s: PlanSummary): void {
  const box = $("details")
  const j = s.jobs.find(x => x.name === state.selected)
  if (!j) {
    box.hidden = true
    return
  }
  box.hidden = false
  const dl = el("dl")
  const add = (k: string, v: string | number | null | undefined) => {
    if (v === null || v === undefined || v === "") return
    dl.append(el("dt", {}, k), el("dd", {}, String(v)))
  }
  add("status", j.status)
  add("attempt", j.attempt)
  add("depends on", j.dependsOn.join(", ") || "nothing")
  add("progress", j.progress !== null ? `${j.progress}%` : null)
  add("markers", markers(j).join(", "))
  add(
    "last report",
    j.lastReport ? `${j.lastReport.status}${j.lastReport.message ? `: ${j.lastReport.message}` : ""} (${time(j.lastReport.at)}, by ${j.lastReport.by})` : null
  )
  add("started", j.startedAt ? new Date(j.startedAt).toLocaleString() : null)
  add("ended", j.endedAt ? new Date(j.endedAt).toLocaleString() : null)
  add("duration", duration(j.durationMs))
  add("exit code", j.exitCode)
  add("signal", j.signal)
  add("error", j.error)
  add("note", j.note)
  add("host", j.host)
  add("pid", j.pid)
  add("log", j.log)
  $("details-title").textContent = `Job ${j.name}`
  $("details-body").replaceChildren(dl)
  if (state.logJob !== j.name) startLog(j.name)
}

// ------------------------------------------------------------------ job log (live tail)

let logSource: EventSource | null = null

function startLog(job: string): void {
  logSource?.close()
  state.logJob = job
  const pre = $("log")
  pre.textContent = ""
  $("log-state").textContent = "connecting…"
  const src = new EventSource(api("log", { job, token }))
  logSource = src
  src.addEventListener("start", ev => ($("log-state").textContent = `attempt ${JSON.parse((ev as MessageEvent).data).attempt}, live`))
  src.addEventListener("log", ev => {
    const { text } = JSON.parse((ev as MessageEvent).data) as { text: string }
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4
    pre.append(document.createTextNode(text))
    if (pre.textContent!.length > 200_000) pre.textContent = pre.textContent!.slice(-100_000)
    if (atBottom) pre.scrollTop = pre.scrollHeight
  })
  src.onerror = () => {
    // a job without a log yet gets 404: say so, and try again when the status changes
    $("log-state").textContent = "no log on the server yet"
    src.close()
    if (logSource === src) {
      logSource = null
      state.logJob = null
    }
  }
}

function select(job: string | null): void {
  state.selected = job
  if (!job) {
    logSource?.close()
    logSource = null
    state.logJob = null
  }
  render()
  if (job) $("details").scrollIntoView({ block: "nearest" })
}

// ------------------------------------------------------------------ history and time travel

async function loadHistory(): Promise<void> {
  const h = await getJson<{ entries: HistoryEntry[] }>("history")
  state.history = h.entries
  renderHistory()
}

function renderHistory(): void {
  const slider = $("slider") as HTMLInputElement
  const n = state.history.length
  const wasLive = !state.past
  slider.max = String(n)
  if (wasLive) slider.value = String(n)
  $("slider-label").textContent = wasLive ? `Live (${n} changes)` : `Change ${slider.value} of ${n}`
  const list = $("timeline")
  const items = state.history
    .map((e, i) => {
      const li = el("li", { "data-index": String(i + 1), class: state.past && Number(slider.value) === i + 1 ? "current" : "" })
      const b = el("button", { type: "button", class: "link" }, time(e.at))
      b.addEventListener("click", () => {
        slider.value = String(i + 1)
        void travel()
      })
      li.append(
        b,
        el("span", { class: "by" }, ` ${e.by}`),
        el("span", { class: "did" }, ` ${e.did}`),
        el("span", { class: "doc" }, e.doc === "plan" ? "" : ` [${e.doc}]`)
      )
      return li
    })
    .reverse()
  list.replaceChildren(...items)
}

let travelSeq = 0
async function travel(): Promise<void> {
  const slider = $("slider") as HTMLInputElement
  const i = Number(slider.value)
  const seq = ++travelSeq
  if (i >= state.history.length) {
    state.past = null
    slider.value = String(state.history.length)
  } else {
    const e = state.history[Math.max(0, i - 1)]
    const at = i === 0 ? await getJson<AtResult>("at", { at: String(e.at - 1) }).catch(() => null) : await getJson<AtResult>("at", { change: e.hash })
    if (seq !== travelSeq) return
    state.past = at
  }
  $("slider-label").textContent = state.past ? `Change ${slider.value} of ${state.history.length}` : `Live (${state.history.length} changes)`
  renderHistory()
  render()
}

// ------------------------------------------------------------------ live updates (server push)

let historyTimer: number | undefined
function connect(): void {
  const src = new EventSource(api("events", { token }))
  const conn = $("conn")
  src.onopen = () => {
    conn.textContent = "live"
    conn.className = "conn on"
  }
  src.addEventListener("status", ev => {
    const s = JSON.parse((ev as MessageEvent).data) as StatusResult
    const before = state.live
    state.live = s
    if (!planRef) planRef = s.summary.id
    document.title = `${s.summary.name}: ${s.summary.status} · concord`
    render()
    // history changes with the plan: reload it (coalesced) when anything but the clock moved
    if (!before || JSON.stringify(before.summary) !== JSON.stringify(s.summary)) {
      window.clearTimeout(historyTimer)
      historyTimer = window.setTimeout(() => void loadHistory().catch(() => {}), 150)
    }
    if (state.selected && !state.logJob) {
      const j = s.summary.jobs.find(x => x.name === state.selected)
      if (j?.log) startLog(j.name)
    }
  })
  src.onerror = () => {
    conn.textContent = "reconnecting…"
    conn.className = "conn off"
  }
}

async function main(): Promise<void> {
  $("slider").addEventListener("input", () => void travel())
  $("back-live").addEventListener("click", () => {
    ;($("slider") as HTMLInputElement).value = String(state.history.length)
    void travel()
  })
  $("details-close").addEventListener("click", () => select(null))
  try {
    state.session = await getJson<Session>("session")
  } catch (e) {
    $("conn").textContent = `error: ${(e as Error).message}`
    $("conn").className = "conn off"
    return
  }
  $("who").textContent = `${state.session.who} · ${state.session.role}${state.session.canAct ? "" : " (read-only)"}`
  const cancelBox = $("cancel-box")
  cancelBox.replaceChildren(actionButton("Cancel plan", "cancel", {}, state.session.canAct, "cancel"))
  connect()
}

void main()
