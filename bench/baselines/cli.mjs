// A one-shot command for a baseline, the counterpart of `concord report` / `concord status --json`:
//   node cli.mjs BACKEND DIR report PLAN JOB STATUS [MESSAGE]
//   node cli.mjs BACKEND DIR status PLAN
import { loadBackend } from "../lib/backends.mjs"

const [backendName, dir, cmd, plan, ...rest] = process.argv.slice(2)
const client = await (await loadBackend(backendName)).open(dir)
if (cmd === "report") {
  const [job, status, message = ""] = rest
  await client.report(plan, job, { status, message })
  process.stdout.write(`reported ${status} for ${job}\n`)
} else if (cmd === "status") {
  process.stdout.write(`${JSON.stringify(await client.summary(plan))}\n`)
} else {
  process.stderr.write(`unknown command ${cmd}\n`)
  process.exitCode = 2
}
await client.close()
