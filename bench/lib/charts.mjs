// SVG charts of the scaling workloads: Vega-Lite specs compiled to Vega and rendered headless in Node.
import { promises as fsp } from "node:fs"
import path from "node:path"
import * as vega from "vega"
import { compile } from "vega-lite"

const COLORS = {
  domain: ["concord", "concord-via-sync", "json-naive", "json-lock", "sqlite", "reference (Automerge protocol)"],
  range: ["#d62728", "#ff9896", "#9467bd", "#1f77b4", "#2ca02c", "#7f7f7f"],
}

async function render(vlSpec) {
  const spec = compile({ $schema: "https://vega.github.io/schema/vega-lite/v6.json", background: "white", ...vlSpec }).spec
  const view = new vega.View(vega.parse(spec), { renderer: "none" })
  try {
    return await view.toSVG()
  } finally {
    view.finalize()
  }
}

/** Colour by backend, with only the backends present in the data in the legend. */
function colorFor(data) {
  const present = new Set(data.map(d => d.backend))
  const keep = COLORS.domain.map((d, i) => [d, COLORS.range[i]]).filter(([d]) => present.has(d))
  return {
    field: "backend",
    type: "nominal",
    title: "backend",
    scale: { domain: keep.map(([d]) => d), range: keep.map(([, r]) => r) },
    legend: { labelLimit: 300 },
  }
}

function line(title, data, x, y, extra = {}) {
  return {
    title,
    data: { values: data },
    width: extra.width ?? 360,
    height: extra.height ?? 240,
    mark: { type: "line", point: true },
    encoding: { x, y, color: colorFor(data), ...(extra.encoding ?? {}) },
    ...(extra.spec ?? {}),
  }
}

/** Writes the charts into `dir`; returns [{file, title}] relative to dir. */
export async function writeCharts(dir, results) {
  await fsp.mkdir(dir, { recursive: true })
  const charts = []
  const add = async (file, title, spec) => {
    await fsp.writeFile(path.join(dir, file), await render(spec))
    charts.push({ file, title })
  }
  const c = results.workloads.contention
  if (c?.rows?.length) {
    const xP = { field: "P", type: "quantitative", title: "processes (P)", scale: { type: "log", base: 2 }, axis: { values: c.config.ps } }
    await add(
      "contention-throughput.svg",
      "Contention: throughput",
      line("Contention: reports/s (median of runs)", c.rows, xP, {
        field: "throughput",
        type: "quantitative",
        title: "reports per second",
        scale: { type: "log" },
      })
    )
    await add(
      "contention-p99.svg",
      "Contention: p99 latency",
      line("Contention: p99 latency, call to durable", c.rows, xP, { field: "p99", type: "quantitative", title: "p99 latency (ms)", scale: { type: "log" } })
    )
  }
  const s = results.workloads.scale
  if (s?.rows?.length && s.config.totals.length > 1) {
    const xT = { field: "reports", type: "quantitative", title: "reports in total", scale: { type: "log" }, axis: { values: s.config.totals, format: "~s" } }
    const facet = { column: { field: "jobs", type: "ordinal", title: "jobs in the plan" } }
    const metrics = [
      ["scale-status-time-first.svg", "Scale: first status after the reports, wall time", "statusFirstMs", "wall time (ms)"],
      ["scale-status-time.svg", "Scale: repeated status, wall time (median)", "statusMs", "wall time (ms)"],
      ["scale-peak-rss-first.svg", "Scale: first status after the reports, peak RSS", "peakRssFirstMB", "peak RSS (MB)"],
      ["scale-peak-rss.svg", "Scale: repeated status, peak RSS", "peakRssMB", "peak RSS (MB)"],
      ["scale-store-size.svg", "Scale: store size on disk", "kib", "store size (KiB)"],
    ]
    const data = s.rows.map(r => ({ ...r, kib: r.bytes / 1024 }))
    for (const [file, title, field, ytitle] of metrics) {
      await add(
        file,
        title,
        line(title, data, xT, { field, type: "quantitative", title: ytitle, scale: { type: "log" } }, { width: 200, height: 200, encoding: facet })
      )
    }
  }
  const y = results.workloads.sync
  const syncRows = (y?.rows ?? []).filter(r => r.convergeMs !== undefined && r.convergeMs !== null)
  if (syncRows.length > 1) {
    const data = syncRows.map(r => ({ ...r, backend: r.kind === "reference" ? "reference (Automerge protocol)" : "concord" }))
    await add(
      "sync-converge.svg",
      "Sync: time to converge",
      line(
        "Sync: time to converge (two peers)",
        data,
        {
          field: "changesPerPeer",
          type: "quantitative",
          title: "offline changes per peer",
          scale: { type: "log" },
          axis: { values: y.config.changes, format: "~s" },
        },
        { field: "convergeMs", type: "quantitative", title: "ms", scale: { type: "log" } }
      )
    )
  }
  return charts
}
