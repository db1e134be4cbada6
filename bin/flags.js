// V8 flags for a concord command: bin/concord.js sets them before Automerge's WebAssembly is compiled, and
// the bench's workers that stand in for `concord run` set the ones `run` gets, so they measure what it runs.
//
// --liftoff-only: Automerge's WebAssembly runs on V8's baseline compiler (Liftoff) only (but for its SHA-256,
//   which lean start-ups and long-lived commands have compiled optimized ahead: bin/concord.js,
//   scripts/lean-startup.mjs). Optimizing it
//   (TurboFan, on background threads) costs more CPU than a short command lives; and a long-lived process
//   that makes small changes one at a time (`concord run` and its local endpoint, `concord mcp`, a dashboard
//   or a `--watch`) kept compiling in the background for thousands of reports, with no gain on its main
//   thread: on a machine whose cores its agents need, that CPU is taken from them. Only `serve` and
//   `sync --watch`, which apply changes in bulk for a long time, keep the optimizing tier. A one-shot
//   `concord sync` does not: measured on offline changes synced A, B, A through a server (the sync
//   workload), its processes used about half the CPU at 1,000 changes per side and the same wall time
//   at 10,000 (tiering up its hot functions costs more than it saves in a process that lives seconds).
// --wasm-lazy-validation (short-lived commands): each WebAssembly function is validated when first compiled
//   (on its first call), not all 3.6 MB of them at start-up: a report calls a small part of Automerge, and
//   the module is then compiled before the CLI has loaded, so the command does not wait for it. A one-shot
//   `concord sync` too: it starts from a bundle of its own (src/cli/lean-sync.ts) that loads in less time
//   than validating the whole module takes on the main thread.
"use strict"

const isBulk = args => args.includes("serve") || (args.includes("--watch") && args.includes("sync"))

/** Does the command live long (serve, run, mcp, dashboard, --watch)? */
const isLongRunning = args => isBulk(args) || args.some(a => a === "run" || a === "mcp" || a === "dashboard" || a === "--watch")
exports.isLongRunning = isLongRunning

/** The command's words (process.argv without node and the script) -> V8 flags. */
exports.v8Flags = function v8Flags(args) {
  // a one-shot sync is a short command too: baseline compiler only, each function validated on first use
  return [...(isBulk(args) ? [] : ["--liftoff-only"]), ...(isLongRunning(args) ? [] : ["--wasm-lazy-validation"])]
}
