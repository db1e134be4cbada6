/** `concord dashboard`: the live dashboard for this store, a thin adapter over src/dashboard. */
import { spawn } from "node:child_process"
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import { resolvePlan } from "../../ops/resolve.js"
import { LocalBackend } from "../../ops/local.js"
import { cliActor, type GlobalOptions, openStore } from "../context.js"
import { out } from "../output.js"
import { parseWholeNumber } from "../parse.js"
import { waitForStopSignal } from "../signals.js"
import { stopJobProcesses } from "../../orchestrator/supervisor.js"

export function registerDashboard(program: Command, globals: () => GlobalOptions): void {
  program
    .command("dashboard")
    .argument("[plan]", "plan shown first: id, url or name (default: the only or most recent plan)")
    .option("--port <port>", "port (0: any free port)", "7800")
    .option("--host <addr>", "address to listen on", "127.0.0.1")
    .option("--open", "open the dashboard in the default browser")
    .description("serve a live dashboard of this store's plans (graph, approvals, job logs, history) until SIGINT/SIGTERM")
    .action(async (planRef: string | undefined, opts: { port: string; host: string; open?: boolean }) => {
      const port = parseWholeNumber("--port", opts.port)!
      if (port > 65535) throw new InputError(`invalid --port "${opts.port}": expected 0 to 65535`)
      const store = openStore(globals())
      // fail now, with the usual message, rather than in the page
      const plan = await resolvePlan(new LocalBackend(store), planRef)
      const { startLocalDashboard } = await import("../../dashboard/local.js")
      const who = `${cliActor()} via dashboard`
      let dash: Awaited<ReturnType<typeof startLocalDashboard>>
      try {
        dash = await startLocalDashboard({
          store,
          planRef: planRef ? plan.id : undefined,
          host: opts.host,
          port,
          who,
          stopper: stopJobProcesses,
          log: l => process.stderr.write(`concord: ${l}\n`),
        })
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
          throw Object.assign(new Error(`cannot listen on ${opts.host}:${port}: ${code}`), { exitCode: 1 })
        }
        throw e
      }
      out(`concord dashboard for plan ${plan.name} (store ${store.dir}): ${dash.url}`)
      if (opts.open) openBrowser(dash.url)
      const ac = new AbortController()
      const stop = waitForStopSignal(ac)
      await new Promise<void>(r => ac.signal.addEventListener("abort", () => r(), { once: true }))
      stop()
      await dash.close()
    })
}

function openBrowser(url: string): void {
  const cmd = process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open"
  try {
    const p = spawn(cmd, [url], { stdio: "ignore", detached: true })
    p.on("error", () => process.stderr.write(`concord: could not start ${cmd}; open the URL yourself\n`))
    p.unref()
  } catch {
    process.stderr.write(`concord: could not start ${cmd}; open the URL yourself\n`)
  }
}
