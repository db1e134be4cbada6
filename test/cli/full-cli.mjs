// `concord` as the full CLI alone (dist/cli/main.js), without bin/concord.js's lean start-ups: the
// reference a lean start-up's outcome is compared with (test/cli/lean.test.ts).
// Usage: node test/cli/full-cli.mjs ARGS...
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { initializeWasm } from "@automerge/automerge/slim"

await initializeWasm(readFileSync(createRequire(import.meta.url).resolve("@automerge/automerge/automerge.wasm")))
const { main } = await import("../../dist/cli/main.js")
const code = await main(process.argv)
process.exitCode = code
