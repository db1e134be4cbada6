/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core), against real
 * processes: `concord dashboard` and `concord serve` as OS processes, `concord run` orchestrating jobs
 * that report with `concord report`. One browser for the whole file.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import path from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { addTokenCli, runConcord, type ServerProcess, spawnConcord, startServerProcess } from "../helpers/processes.mjs"
import { cleanup, ROOT, statusJson, tempDir, writePlan } from "../helpers/cli.js"

const CHROMIUM = "/usr/bin/chromium"
let browser: Browser
const dirs: string[] = []
const kill: (() => void)[] = []

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)`)
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
})

afterAll(async () => {
  for (const k of kill) k()
  await browser?.close()
  for (const d of dirs) cleanup(d)
})

function store(): string {
  const d = tempDir("concord-dash-")
  dirs.push(d)
  return d
}

/** Start `concord ARGS` and wait for the line matching `re` on its stdout. */
async function startUntil(dir: string, args: string[], re: RegExp): Promise<{ match: RegExpExecArray; stop: () => Promise<unknown> }> {
  const p = spawnConcord(dir, args)
  kill.push(() => p.child.kill("SIGKILL"))
  const t0 = Date.now()
  for (;;) {
    const m = re.exec(p.output().stdout)
    if (m) return { match: m, stop: () => (p.child.kill("SIGTERM"), p.done) }
    if (p.child.exitCode !== null) throw new Error(`concord ${args.join(" ")} exited: ${p.output().stderr}`)
    if (Date.now() - t0 > 20_000) throw new Error(`concord ${args.join(" ")} did not start: ${p.output().stderr}`)
    await new Promise(r => setTimeout(r, 50))
  }
}

/** Record in the page when each job first shows each status in the graph (page clock = this clock). */
async function watchStatuses(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { __seen: Record<string, number> }
    w.__seen = {}
    const look = () => {
      for (const n of document.querySelectorAll<SVGElement>("#graph [data-status]")) {
        const k = `${n.dataset.job}:${n.dataset.status}`
        if (!(k in w.__seen)) w.__seen[k] = Date.now()
      }
    }
    look()
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true })
  })
}

const node = (page: Page, job: string) => page.locator(`#graph [data-job="${job}"]`)

describe("concord dashboard (local store)", () => {
  it("shows a run live, records Approve and resumes the orchestrator, travels back in history, escapes report text", async () => {
    const dir = store()
    const go = path.join(dir, "go")
    const reported = path.join(dir, "reported-at")
    writePlan(
      dir,
      "plan.yaml",
      `name: dash-e2e
maxParallel: 1
graceMs: 3000
jobs:
  - name: flaky
    run: echo "flaky - something broke"; exit 1
  - name: build
    run: |
      concord report progress '<img src=x onerror="document.body.dataset.xss=1"><b id="xss">halfway</b>' --progress 50
      echo "compiling step 2"
      while [ ! -f "${go}" ]; do sleep 0.02; done
      concord report completed "built" && date +%s%3N > "${reported}"
  - name: after
    run: concord report completed "after done"
    dependsOn: [build]
`
    )
    expect((await runConcord(dir, ["plan", "create", "plan.yaml"])).code).toBe(0)
    const dash = await startUntil(dir, ["dashboard", "--port", "0"], /(http:\/\/127\.0\.0\.1:\d+\/dashboard\/\?token=\S+)/)
    const url = dash.match[1]
    const run = spawnConcord(dir, ["run", "--wait", "--quiet"])
    kill.push(() => run.child.kill("SIGKILL"))

    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } })
    const errors: string[] = []
    page.on("pageerror", e => errors.push(e.message))
    await page.goto(url)
    await watchStatuses(page)

    // the failure raises on_error: the page shows the checkpoint and why
    await expect.poll(() => node(page, "flaky").getAttribute("data-status"), { timeout: 20_000 }).toBe("failed")
    await page.locator("#checkpoint").getByText("Checkpoint: on_error").waitFor()
    expect(await page.locator("#checkpoint .why").textContent()).toMatch(/job flaky \(attempt 1\).*exit code 1/)
    expect(await node(page, "build").getAttribute("data-status")).toBe("queued")
    await page.screenshot({ path: path.join(ROOT, "docs", "dashboard.png"), fullPage: true })

    // Approve (go on without the failed job): the orchestrator resumes and launches build
    await page.locator('#checkpoint button[data-action="continue"]').click()
    await expect.poll(() => page.locator("#action-result").textContent(), { timeout: 10_000 }).toMatch(/approved checkpoint on_error #1 as .* via dashboard/)
    await expect.poll(() => node(page, "build").getAttribute("data-status"), { timeout: 15_000 }).toBe("running")
    const s1 = await statusJson(dir)
    expect(s1.checkpoint).toBe(null)

    // the report's message is text, never HTML
    await expect.poll(() => page.locator('tr[data-job="build"] td.report').textContent(), { timeout: 15_000 }).toContain('<b id="xss">halfway</b>')
    expect(await page.locator("#xss").count()).toBe(0)
    expect(await page.evaluate(() => document.body.dataset.xss)).toBeUndefined()

    // click a job: details with its live log tail
    await node(page, "build").click()
    await expect.poll(() => page.locator("#log").textContent(), { timeout: 10_000 }).toContain("compiling step 2")
    await page.screenshot({ path: path.join(ROOT, "docs", "dashboard.png"), fullPage: true })

    // the job reports completed: visible in the page within a second of the report being durable
    writeFileSync(go, "")
    await expect.poll(() => existsSync(reported), { timeout: 15_000 }).toBe(true)
    await expect
      .poll(() => page.evaluate(() => (window as unknown as { __seen: Record<string, number> }).__seen["build:completed"]), { timeout: 5000 })
      .toBeTypeOf("number")
    const seenAt = await page.evaluate(() => (window as unknown as { __seen: Record<string, number> }).__seen["build:completed"])
    const reportedAt = Number(readFileSync(reported, "utf8"))
    expect(seenAt - reportedAt).toBeLessThan(1000)

    // the orchestrator goes on to the end: after completes, the plan ends failed (flaky was not retried)
    await expect.poll(() => node(page, "after").getAttribute("data-status"), { timeout: 20_000 }).toBe("completed")
    await expect.poll(() => page.locator("#plan-status").textContent(), { timeout: 20_000 }).toBe("failed")
    expect((await run.done).code).toBe(1)

    // history: the approval is there with who made it; the slider goes back to the plan as created
    await expect.poll(() => page.locator("#timeline").textContent(), { timeout: 5000 }).toMatch(/via dashboard.*approve/)
    await page.locator("#slider").fill("1")
    await page.locator("#past-banner").waitFor({ state: "visible" })
    await expect.poll(() => node(page, "flaky").getAttribute("data-status"), { timeout: 10_000 }).toBe("queued")
    expect(await page.locator("#plan-status").textContent()).toBe("pending")
    // one step before the approval: paused at on_error, build still queued
    const entries: { did: string; by: string }[] = (await (await page.request.get(url.replace("/dashboard/?", "/dashboard/api/history?"))).json()).entries
    const approval = entries.findIndex(e => /via dashboard/.test(e.by))
    expect(approval).toBeGreaterThan(0)
    await page.locator("#slider").fill(String(approval)) // slider value i = after the i-th change
    await expect.poll(() => page.locator("#plan-status").textContent(), { timeout: 10_000 }).toBe("paused")
    expect(await node(page, "flaky").getAttribute("data-status")).toBe("failed")
    expect(await node(page, "build").getAttribute("data-status")).toBe("queued")
    await page.locator("#back-live").click()
    await expect.poll(() => page.locator("#plan-status").textContent(), { timeout: 10_000 }).toBe("failed")

    // a phone-sized screen: nothing wider than the viewport
    await page.setViewportSize({ width: 390, height: 844 })
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(391)

    // without the URL's secret the API refuses
    const bare = url.replace(/\?token=.*/, "")
    expect((await page.request.get(`${bare}api/session`)).status()).toBe(401)
    expect((await page.request.post(`${bare}api/cancel`, { data: {}, headers: { authorization: "Bearer wrong" } })).status()).toBe(401)
    expect(errors).toEqual([])
    await page.close()
    await dash.stop()
  }, 120_000)
})

describe("dashboard on concord serve", () => {
  let dir: string
  let server: ServerProcess
  let planId: string
  const tk: Record<string, string> = {}

  beforeAll(async () => {
    dir = store()
    writePlan(dir, "plan.yaml", "name: served\njobs:\n  - name: a\n    run: exit 4\n  - name: b\n    run: exit 0\n    dependsOn: [a]\n")
    const r = await runConcord(dir, ["plan", "create", "plan.yaml", "--json"])
    planId = JSON.parse(r.stdout).id
    const other = await runConcord(dir, ["plan", "create", "plan.yaml", "--json"])
    const otherId = JSON.parse(other.stdout).id
    // run to the checkpoint (a fails, nothing else can run: exit 3) while the tokens are made
    const [run] = await Promise.all([
      runConcord(dir, ["run", planId, "--quiet"]),
      (async () => {
        tk.admin = await addTokenCli(dir, planId, "admin")
        tk.reader = await addTokenCli(dir, planId, "reader")
        tk.job = await addTokenCli(dir, planId, "job:a")
        tk.otherPlan = await addTokenCli(dir, otherId, "admin")
      })(),
    ])
    expect(run.code).toBe(3)
    server = await startServerProcess(dir)
    kill.push(() => server.proc.kill("SIGKILL"))
  }, 180_000)

  afterAll(async () => {
    await server?.stop()
  })

  const base = () => `http://127.0.0.1:${server.port}/dashboard/`
  const post = (page: Page, token: string, body: object) =>
    page.request.post(`${base()}api/approve`, { data: body, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } })

  it("a reader sees the plan but cannot approve: the page has no working buttons and the server refuses", async () => {
    const page = await browser.newPage()
    await page.goto(`${base()}?token=${encodeURIComponent(tk.reader)}&plan=${planId}`)
    await expect.poll(() => node(page, "a").getAttribute("data-status"), { timeout: 10_000 }).toBe("failed")
    expect(await page.locator("#who").textContent()).toMatch(/reader \(read-only\)/)
    const buttons = page.locator("#checkpoint button")
    expect(await buttons.count()).toBeGreaterThan(0)
    for (const b of await buttons.all()) expect(await b.isDisabled()).toBe(true)
    // the page is not the guard: the same request as the Approve button, sent anyway
    const r = await post(page, tk.reader, { plan: planId, checkpoint: "on_error" })
    expect(r.status()).toBe(403)
    expect((await r.json()).error).toMatch(/read-only/)
    const jr = await post(page, tk.job, { plan: planId, skip: "a" })
    expect(jr.status()).toBe(403)
    expect((await jr.json()).error).toMatch(/role job:a may not create attempts/)
    // a token of another plan does not even see this one
    expect((await page.request.get(`${base()}api/history?plan=${planId}`, { headers: { authorization: `Bearer ${tk.otherPlan}` } })).status()).toBe(404)
    expect((await page.request.get(`${base()}api/session`)).status()).toBe(401)
    const s = await statusJson(dir, planId)
    expect(s.checkpoint).toBe("on_error")
    expect(s.approvedBy).toBe(null)
    expect(s.jobs.find((j: { name: string }) => j.name === "a").status).toBe("failed")
    await page.close()
  })

  it("an admin's Approve is recorded with who made it, as concord approve records it", async () => {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } })
    await page.goto(`${base()}?token=${encodeURIComponent(tk.admin)}`)
    await page.locator('#checkpoint button[data-action="retry"]').waitFor()
    expect(await page.locator('#checkpoint button[data-action="retry"]').isDisabled()).toBe(false)
    await page.locator('#checkpoint button[data-action="retry"]').click()
    await expect.poll(() => page.locator("#action-result").textContent(), { timeout: 10_000 }).toMatch(/a will run again as attempt 2/)
    await expect.poll(() => page.locator('tr[data-job="a"] td:nth-child(3)').textContent(), { timeout: 10_000 }).toBe("2")
    const s = await statusJson(dir, planId)
    // recorded; the orchestrator clears the checkpoint when it next runs
    expect(s.approvedBy).toMatch(/via dashboard \(token tk_/)
    expect(s.jobs.find((j: { name: string }) => j.name === "a").attempt).toBe(2)
    const h = await runConcord(dir, ["history", planId, "--json"])
    expect(h.stdout).toMatch(/via dashboard \(token tk_/)
    await page.close()
  })
})

mkdirSync(path.join(ROOT, "docs"), { recursive: true })
