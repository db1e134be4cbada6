// A job's long-lived sender, for the crash tests: node send-fixture.mjs STORE PLAN JOB N
// Sends N reports one after another through the plan's endpoint while there is one (else the store), as
// `concord mcp` does, and prints "ack I VIA" once report I is acknowledged.
const dist = new URL("../../../dist/src/", import.meta.url).href
const { PlanStore } = await import(`${dist}sync/store/PlanStore.js`)
const { LocalBackend } = await import(`${dist}ops/local.js`)
const { reportRouted } = await import(`${dist}ops/endpoint.js`)

const [store, planId, job, n] = process.argv.slice(2)
const backend = new LocalBackend(new PlanStore(store))
for (let i = 0; i < Number(n); i++) {
  const r = await reportRouted(backend, { planRef: planId, job, status: "progress", message: `${job}-${i}`, progress: i % 101 }, () => ({
    by: `job:${job}#1@test`,
    now: Date.now(),
  }))
  process.stdout.write(`ack ${i} ${r.via}\n`)
}
await backend.close()
process.exit(0)
