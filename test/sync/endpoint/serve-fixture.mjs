// An endpoint in its own OS process, for the crash tests: node serve-fixture.mjs STORE PLAN MODE
//   MODE normal      serve reports as concord run does
//   MODE die-before  SIGKILL itself when a report arrives, before applying it
//   MODE die-after   SIGKILL itself after a report is durable, before answering
// Prints "ready <socket>" once listening.
const dist = new URL("../../../dist/src/", import.meta.url).href
const { PlanStore } = await import(`${dist}sync/store/PlanStore.js`)
const { LocalBackend } = await import(`${dist}ops/local.js`)
const { endpointHandlers } = await import(`${dist}ops/endpoint.js`)
const { startEndpoint } = await import(`${dist}sync/endpoint/server.js`)
const { hostName } = await import(`${dist}lib/host.js`)

const [store, planId, mode] = process.argv.slice(2)
// opened as serveEndpoint (src/ops/endpoint.ts) opens it
const backend = new LocalBackend(new PlanStore(store, { live: true, groupWrites: true }))
const h = endpointHandlers(backend, planId)
const handlers = {
  ping: h.ping,
  report: async (input, by) => {
    if (mode === "die-before") process.kill(process.pid, "SIGKILL")
    const r = await h.report(input, by)
    if (mode === "die-after") process.kill(process.pid, "SIGKILL")
    return r
  },
}
const server = await startEndpoint({ storeDir: store, planId, host: hostName(), handlers })
process.stdout.write(`ready ${server.socket}\n`)
process.on("SIGTERM", () => server.close().then(() => process.exit(0)))
