#!/usr/bin/env node
// Short-lived commands (report, status, plan ...) run Automerge's WebAssembly with V8's baseline
// compiler only: optimizing it in the background costs more CPU than such a command lives. Long-running
// or heavy commands (run, serve, sync, --watch) keep the optimizing tier.
import v8 from "node:v8"

const longRunning = process.argv.some(a => a === "run" || a === "serve" || a === "sync" || a === "mcp" || a === "--watch")
if (!longRunning) v8.setFlagsFromString("--liftoff-only")

// Exit only once stdout and stderr are flushed: writes to a pipe are asynchronous, and exiting at once
// would cut a large `status --json` short.
const exit = code => {
  process.exitCode = code
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)))
}

const { main } = await import("../dist/cli/main.js")
main(process.argv).then(exit, err => {
  process.stderr.write(`concord: ${err?.stack ?? err}\n`)
  exit(1)
})
