// Workload: the dashboard. A report is made durable, one at a time; a real browser (Debian's chromium,
// driven by playwright-core) shows the dashboard page of a `concord serve` process (an OS process) and
// records when each report's text first appears in the page (a MutationObserver, page clock = this
// machine's clock). Latency = visible in the page - durable.
//
// Two ways a report reaches the server that serves the page:
//   "agent via sync server": a client session with a job token (RemoteBackend, as `concord report
//       --remote`); durable = the server confirmed it wrote the change;
//   "agent on the server's store": a process on the server's machine writing its store (LocalBackend,
//       as `concord report`); durable = its chunk is fsynced.
// Either way the page gets it by server push (SSE of ops.watchStatus), never by polling.
import { existsSync, mkdirSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { ROOT } from "../lib/concord.mjs"
import { median, p99, quantile } from "../lib/stats.mjs"

export const id = "dashboard"
const CHROMIUM = "/usr/bin/chromium"

export function config(quick) {
  return { reports: quick ? 15 : 120, gapMs: 60, jitterMs: 80 }
}

const sleep = ms => new Promise(r => setTimeout(r, ms))

export async function run({ quick, log }) {
  const cfg = config(quick)
  if (!existsSync(CHROMIUM)) {
    log(`dashboard: pending (${CHROMIUM} missing)`)
    return { config: cfg, rows: [{ way: "dashboard", pending: `${CHROMIUM} is not installed` }] }
  }
  const { chromium } = await import("playwright-core")
  const testing = await import("../lib/net-harness.mjs")
  const ops = await import(path.join(ROOT, "dist/src/ops/index.js"))
  const { PlanStore } = await import(path.join(ROOT, "dist/src/sync/store/PlanStore.js"))
  const dir = path.join(os.tmpdir(), `concord-bench-dash-${process.pid}-${Date.now()}`)
  mkdirSync(dir, { recursive: true })
  const rows = []
  let server
  let browser
  try {
    const yaml = path.join(dir, "plan.yaml")
    await import("node:fs").then(fs => fs.writeFileSync(yaml, "name: dash-bench\njobs:\n  - name: j0\n    run: 'true'\n"))
    const created = await testing.runConcord(dir, ["plan", "create", yaml, "--json"])
    if (created.code !== 0) throw new Error(`plan create: ${created.stderr}`)
    const planId = JSON.parse(created.stdout).id
    const viewer = await testing.addTokenCli(dir, planId, "reader")
    const agent = await testing.addTokenCli(dir, planId, "job:j0")
    server = await testing.startServerProcess(dir)
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    })
    const page = await browser.newPage()
    await page.goto(`http://127.0.0.1:${server.port}/dashboard/?token=${encodeURIComponent(viewer)}&plan=${planId}`)
    await page.locator('#graph [data-job="j0"]').waitFor({ timeout: 30_000 })
    await page.evaluate(() => {
      window.__seen = {}
      const look = () => {
        const m = /\b(r\d+-\d+)\b/.exec(document.querySelector('tr[data-job="j0"] td.report')?.textContent ?? "")
        if (m && !(m[1] in window.__seen)) window.__seen[m[1]] = performance.timeOrigin + performance.now()
      }
      new MutationObserver(look).observe(document.body, { subtree: true, childList: true, characterData: true })
    })
    const ways = {
      "agent via sync server": async () => ops.RemoteBackend.open({ url: server.url, token: agent }, { retry: false }),
      "agent on the server's store": async () => new ops.LocalBackend(new PlanStore(dir, { onWarning: () => {} })),
    }
    let round = 0
    for (const [way, open] of Object.entries(ways)) {
      round++
      const backend = await open()
      const loadBefore = os.loadavg()[0]
      const durable = {}
      try {
        for (let i = 0; i < cfg.reports; i++) {
          const key = `r${round}-${i}`
          await backend.appendReport(
            planId,
            "j0",
            { status: "progress", message: key, progress: i % 101, attempt: 1 },
            { by: "job:j0#1@bench", now: Date.now() }
          )
          durable[key] = performance.timeOrigin + performance.now()
          await sleep(cfg.gapMs + Math.random() * cfg.jitterMs)
        }
        await sleep(1500)
      } finally {
        await backend.close()
      }
      const seen = await page.evaluate(() => window.__seen)
      const lat = []
      let missed = 0
      for (const [k, t] of Object.entries(durable)) {
        if (seen[k] === undefined) missed++
        else lat.push(seen[k] - t)
      }
      // a report overtaken by the next one before the page drew it is not "missed": the page shows the
      // latest report, which is what a human sees
      const overtaken = Object.keys(durable).filter((k, i, all) => seen[k] === undefined && all.slice(i + 1).some(n => seen[n] !== undefined)).length
      const row = {
        way,
        load1: [loadBefore, os.loadavg()[0]],
        n: lat.length,
        missed: missed - overtaken,
        overtaken,
        p50: median(lat),
        p90: quantile(lat, 0.9),
        p99: p99(lat),
        max: lat.length ? Math.max(...lat) : null,
        min: lat.length ? Math.min(...lat) : null,
      }
      rows.push(row)
      log(
        `dashboard ${way}: p50 ${row.p50?.toFixed(1)} ms, p99 ${row.p99?.toFixed(1)} ms, max ${row.max?.toFixed(1)} ms, n ${row.n}, overtaken ${overtaken}, missed ${row.missed}`
      )
    }
  } finally {
    await browser?.close().catch(() => {})
    await server?.stop("SIGTERM").catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  }
  return { config: cfg, rows }
}
