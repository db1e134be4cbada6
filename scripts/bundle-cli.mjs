// Bundle the CLI into a few files (dist/cli/) so a short-lived `concord report` does not resolve and
// read dozens of small modules at start-up: about 0.22 s -> 0.13 s per command on a 2-core machine.
// Automerge stays external (it loads its WebAssembly from its own files).
import { rmSync } from "node:fs"
import { build } from "esbuild"

// Chunk names carry a content hash: start from an empty directory so no stale chunk is left behind
// (and packed).
rmSync("dist/cli", { recursive: true, force: true })

const common = {
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  external: ["@automerge/*", "bufferutil", "utf-8-validate"],
  // Automerge's slim builds: its WebAssembly is then compiled once, in the background, while the CLI
  // loads (bin/concord.js), instead of synchronously at import by the "fullfat" entry points.
  plugins: [
    {
      name: "automerge-slim",
      setup(b) {
        b.onResolve({ filter: /^@automerge\/(automerge|automerge-repo)$/ }, args => ({ path: `${args.path}/slim`, external: true }))
      },
    },
  ],
  logLevel: "warning",
  // Some bundled CommonJS dependencies call require(); give the ESM bundle one.
  banner: { js: 'import { createRequire as __concordCreateRequire } from "node:module"; const require = __concordCreateRequire(import.meta.url);' },
}
await build({ ...common, entryPoints: ["dist/src/cli/main.js"], splitting: true, outdir: "dist/cli" })
// The lean start-up of a job's `concord report` (src/cli/fast.ts): one file of its own, so it reads and
// compiles one module instead of the handful of chunks it would share with the CLI.
await build({ ...common, entryPoints: ["dist/src/cli/fast.js"], outfile: "dist/cli/fast.js" })
// The lean start-up of every other one-shot `concord report` (src/cli/lean.ts): the report command and the
// store, one file, without the other commands, the plan-file parser or the sync client.
await build({ ...common, entryPoints: ["dist/src/cli/lean.js"], outfile: "dist/cli/lean.js" })
await import("./bundle-dashboard.mjs")
