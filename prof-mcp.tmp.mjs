import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { startWorker, stopAll, tempDir } from "./bench/lib/proc.mjs"
const N = Number(process.argv[2] ?? 300), served = process.argv[3] === "served"
const dir = tempDir()
const w = await startWorker("concord", dir)
const plan = await w.call("createPlan", { name: "mcp", jobs: ["j0"] })
if (served) await w.call("serveEndpoint", { plan })
const prof = process.env.PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.PROF}`] : []
const transport = new StdioClientTransport({ command: process.execPath, args: [...prof, "bin/concord.js", "mcp", "--store", dir, "--plan", plan, "--job", "j0"], stderr: "inherit", env: { ...process.env } })
const client = new Client({ name: "p", version: "1" })
await client.connect(transport)
const lat = []
for (let i = 0; i < N; i++) {
  const t0 = performance.now()
  const r = await client.callTool({ name: "mc_report", arguments: { status: "progress", message: `m${i}`, progress: i % 100 } })
  lat.push(performance.now() - t0)
  if (r.isError) throw new Error(JSON.stringify(r))
  if (i === 0) console.log("via", r.structuredContent?.via)
}
lat.sort((a, b) => a - b)
console.log(`median ${lat[N >> 1].toFixed(2)} p99 ${lat[Math.floor(N * 0.99)].toFixed(2)}`)
await client.close()
await stopAll([w])
