// The backends every workload runs: concord and the baselines in bench/baselines/.
import path from "node:path"
import { fileURLToPath } from "node:url"

const HERE = path.dirname(fileURLToPath(import.meta.url))

export const BACKENDS = {
  concord: path.join(HERE, "concord.mjs"),
  "json-naive": path.join(HERE, "../baselines/json-naive.mjs"),
  "json-lock": path.join(HERE, "../baselines/json-lock.mjs"),
  sqlite: path.join(HERE, "../baselines/sqlite.mjs"),
}
export const BASELINES = ["json-naive", "json-lock", "sqlite"]

export async function loadBackend(name) {
  const file = BACKENDS[name]
  if (!file) throw new Error(`unknown backend ${name}`)
  return import(file)
}

/** Which backends can run here; a missing optional one is skipped with its reason. */
export async function availableBackends(log) {
  const ok = []
  const skipped = {}
  for (const name of Object.keys(BACKENDS)) {
    const b = await loadBackend(name)
    const a = await b.available()
    if (a.ok) ok.push(name)
    else {
      skipped[name] = a.reason
      log(`skipping ${name}: ${a.reason}`)
    }
  }
  return { ok, skipped }
}
