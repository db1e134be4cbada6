// Bundle the CLI into a few files (dist/cli/) so a short-lived `concord report` does not resolve and
// read dozens of small modules at start-up: about 0.22 s -> 0.13 s per command on a 2-core machine.
// Automerge stays external (it loads its WebAssembly from its own files).
import { readFileSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import path from "node:path"
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
// main.js: the CLI; sync-main.js: `concord sync` alone (bin/concord.js), sharing the chunks it needs
await build({ ...common, entryPoints: ["dist/src/cli/main.js", "dist/src/cli/sync-main.js"], splitting: true, outdir: "dist/cli" })

// commander loads node:child_process (and with it dgram, net's socket list ...) at start-up for one
// thing only, running an executable subcommand, which the lean start-ups below never do: in their
// bundles it is loaded on first use instead (about 7 ms less per report here).
const lazyChildProcess = {
  name: "lazy-child-process",
  setup(b) {
    b.onResolve({ filter: /^node:child_process$/ }, args =>
      /[\\/]commander[\\/]/.test(args.importer) ? { path: "lazy-child-process", namespace: "lazy" } : undefined
    )
    b.onLoad({ filter: /.*/, namespace: "lazy" }, () => ({
      contents: 'let cp\nmodule.exports = new Proxy({}, { get: (_, k) => (cp ??= require("node:child_process"))[k] })\n',
      loader: "js",
    }))
  },
}
// The lean start-up of a job's `concord report` (src/cli/fast.ts): one file of its own, so it reads and
// compiles one module instead of the handful of chunks it would share with the CLI.
await build({ ...common, entryPoints: ["dist/src/cli/fast.js"], outfile: "dist/cli/fast.js", plugins: [...common.plugins, lazyChildProcess] })
// The lean start-up of every other one-shot `concord report` (src/cli/lean.ts): the report command and the
// store, one file, without the other commands, the plan-file parser or the sync client. It uses no
// automerge-repo, so it bundles Automerge's own JavaScript (slim) too: one file to load instead of
// Automerge's 16 modules (about 11 ms against 35-50 ms here). That copy of Automerge is its own, and
// lean.js exports its initializeWasm, which bin/concord.js calls with the compiled WebAssembly, and the
// version it was built from: bin/concord.js uses the lean start-up only with the same Automerge installed
// (its JavaScript and its WebAssembly must match), else the full CLI.
const automerge = path.join(path.dirname(createRequire(import.meta.url).resolve("@automerge/automerge/automerge.wasm")), "..", "package.json")
const automergeVersion = JSON.parse(readFileSync(automerge, "utf8")).version
// It is a script, not an ES module: one function expression that bin/concord.js compiles with vm.Script,
// so that V8 can start from a code cache of it (dist/cli/lean.cache, written by scripts/lean-startup.mjs
// after a real report, so the functions a report runs are in it): Node 20 caches no ES module's code.
//
// dist/cli/lean-sync.js is made the same way: the lean start-up of a one-shot `concord sync` (src/cli/lean-sync.ts),
// the sync command by change exchange alone, without automerge-repo, the server or the other commands.
const leanScript = (entry, outfile) =>
  build({
    ...common,
    format: "cjs",
    entryPoints: [entry],
    outfile,
    define: { "import.meta.url": "__concordImportMetaUrl" },
    banner: { js: "(function (exports, require, module, __concordImportMetaUrl) {" },
    footer: { js: `module.exports.automergeVersion = ${JSON.stringify(automergeVersion)};\n})` },
    external: ["@automerge/automerge-repo", "@automerge/automerge-repo/*", "bufferutil", "utf-8-validate"],
    plugins: [
      lazyChildProcess,
      {
        name: "automerge-slim-bundled",
        setup(b) {
          b.onResolve({ filter: /^@automerge\/automerge$/ }, async args => {
            const r = await b.resolve("@automerge/automerge/slim", { kind: args.kind, resolveDir: args.resolveDir })
            return r.errors.length ? { errors: r.errors } : { path: r.path }
          })
        },
      },
    ],
  })
await leanScript("dist/src/cli/lean.js", "dist/cli/lean.js")
await leanScript("dist/src/cli/lean-sync.js", "dist/cli/lean-sync.js")
// vm.Script runs them without an ES module loader: a dynamic import() left in one (of a module not bundled)
// would fail when called, and automerge-repo would load all of itself: the build refuses both.
for (const f of ["dist/cli/lean.js", "dist/cli/lean-sync.js"]) {
  const text = readFileSync(f, "utf8")
  if (/\bimport\(/.test(text)) throw new Error(`${f} has a dynamic import(): bundle that module`)
  if (/require\("@automerge\/automerge-repo/.test(text)) throw new Error(`${f} loads automerge-repo`)
}
await import("./bundle-dashboard.mjs")
// What a one-shot report compiles ahead, and V8's code cache of its bundle: recorded from real reports.
await (await import("./lean-startup.mjs")).recordLeanStartup()
