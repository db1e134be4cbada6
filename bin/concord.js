#!/usr/bin/env node
// bin/ is CommonJS (bin/package.json): a one-shot `concord report` then starts without Node's ES module
// loader, and takes node:fs as it is, not as an ES module facade, whose making loads every lazy part of
// it (streams, fs/promises, readline, watchers). The full CLI's bundles are still ES modules, imported.
"use strict"
const { closeSync, existsSync, fstatSync, openSync, read: readAt, readFileSync, renameSync, writeFileSync } = require("node:fs")
const path = require("node:path")

const start = async () => {
  let argv = process.argv
  // `concord report` starts lean: only the report command's code is loaded, never the rest of the CLI.
  // Help and --remote go to the full CLI at once; so does anything the lean start-ups do not take (a usage
  // error), with the words it was given, before anything was read or written.
  const report = argv.slice(2).includes("report") && !argv.some(a => /^(--remote|--token|--help|-h)(=|$)/.test(a))
  // `concord sync` (not its help, which lists the other commands) has an entry point of its own, and a
  // one-shot sync (not --watch or --list) a lean start-up (below)
  const words = argv.slice(2)
  const at = words[0] === "--store" ? 2 : /^--store=/.test(words[0] ?? "") ? 1 : 0
  const sync = words[at] === "sync" && !words.some(a => /^(--help|-h)(=|$)/.test(a))
  const oneShotSync = !report && sync && !words.some(a => /^(--watch|--list)(=|$)/.test(a))

  // Exit only once stdout and stderr are flushed: writes to a pipe are asynchronous, and exiting at once
  // would cut a large `status --json` short.
  const exit = code => {
    process.exitCode = code
    process.stdout.write("", () => process.stderr.write("", () => process.exit(code)))
  }

  // A job's `concord report` while `concord run` serves its plan: sent to the run's endpoint by a lean
  // start-up that loads neither Automerge nor the other commands (src/cli/fast.ts); anything it does not
  // take goes on below, with the words it was given (and the report id to reuse, if it may have been taken).
  // Only a job's report is tried there (concord run gives its jobs CONCORD_STORE and CONCORD_PLAN), and only
  // while the run's endpoint file exists: any other report goes on below, which also routes a report to an
  // endpoint it finds.
  const { CONCORD_STORE: store, CONCORD_PLAN: plan } = process.env
  const served = () => !!store && !!plan && /^[1-9A-HJ-NP-Za-km-z]+$/.test(plan) && existsSync(path.resolve(store, "endpoints", `${plan}.json`))
  if (report && served()) {
    const { fastReport } = await import("../dist/cli/fast.js")
    const r = await fastReport(argv)
    if ("code" in r) {
      process.exitCode = r.code
      await new Promise(resolve => process.stdout.write("", () => process.stderr.write("", resolve)))
      process.exit(r.code)
    }
    argv = r.argv
  }

  // Automerge's installed WebAssembly file and version, from its package.json, read once. The package is
  // looked for as Node looks for it (in the node_modules folders from bin/ up to the root) and the file
  // taken from the package's exports: require.resolve would load and compile Node's package-exports
  // resolver first, which costs a report more than reading the WebAssembly. Any other layout (an export
  // that is not a plain file, NODE_PATH): require.resolve.
  const automergePackage = () => {
    for (let dir = __dirname; ; ) {
      const root = path.join(dir, "node_modules", "@automerge", "automerge")
      if (path.basename(dir) !== "node_modules" && existsSync(path.join(root, "package.json"))) {
        const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"))
        const target = pkg?.exports?.["./automerge.wasm"]
        if (typeof target === "string" && target.startsWith("./") && typeof pkg.version === "string") {
          return { wasmFile: path.join(root, target), version: pkg.version }
        }
        break
      }
      const up = path.dirname(dir)
      if (up === dir) break
      dir = up
    }
    const wasmFile = require.resolve("@automerge/automerge/automerge.wasm")
    return { wasmFile, version: JSON.parse(readFileSync(path.join(path.dirname(wasmFile), "..", "package.json"), "utf8")).version }
  }
  const { wasmFile, version: installedAutomerge } = automergePackage()

  // A one-shot report (or sync) compiles the WebAssembly functions such a command calls ahead, on V8's
  // background threads while its JavaScript loads, instead of one by one on the main thread at their first call
  // (the largest single cost of such a report): dist/cli/wasm-hints.json lists them, recorded from real
  // reports and syncs at build time (scripts/lean-startup.mjs), as a compilation-hints section that goes into the
  // module's bytes before its code section; every other function stays lazy. Only for the V8 and the
  // Automerge WebAssembly it was recorded with; if V8 refuses the module so, it is compiled as it is. A
  // long-lived command (`run`, `mcp`, `dashboard`, `serve`, `--watch`) gets the same file's one
  // optimize-ahead mark (Automerge's SHA-256) and nothing else.
  //
  // The module's bytes are read on Node's thread pool while the main thread sets V8's flags (below): most
  // of the read's time is the first touch of the 3 MB it fills.
  const leanStart = report || oneShotSync
  // which of V8's WebAssembly tiers and checks the command runs with (bin/flags.js says why); loaded here,
  // after the endpoint's lean start-up, which runs no WebAssembly
  const flags = require("./flags.js")
  const hintedWasm = () => {
    let hints
    try {
      hints = JSON.parse(readFileSync(path.join(__dirname, "..", "dist", "cli", "wasm-hints.json"), "utf8"))
    } catch {
      return undefined
    }
    const { v8: v8Version, automerge, size, at, end, head, classes } = hints ?? {}
    if (v8Version !== process.versions.v8.split(".").slice(0, 2).join(".") || typeof head !== "string" || typeof classes !== "string") return undefined
    if (![size, at, end].every(Number.isSafeInteger) || at < 8 || at >= end || end > size || automerge !== installedAutomerge) return undefined
    const fd = openSync(wasmFile, "r")
    let reading = false // (then closed once read)
    try {
      if (fstatSync(fd).size !== size) return undefined
      // per function, for a lean start-up: 2 (compile ahead) if a command like this one calls it, else 1
      // (lazy): a report that moves its job's status (completed, failed) calls more; a one-shot sync has a
      // class of its own. For a long-lived command 0 (as V8's flags say, as without hints). Class 8
      // (Automerge's SHA-256, which hashes every change loaded or made: scripts/lean-startup.mjs), for every
      // command: 42, compiled ahead with the optimizing compiler as its first and only tier (strategy 2
      // eager, baseline tier 2 and top tier 2 optimized, two bits each), on a background thread, whatever
      // --liftoff-only says (`concord run`'s endpoint and `concord mcp` hash every report they write)
      const want = oneShotSync ? 4 : argv.includes("completed") || argv.includes("failed") ? 3 : 1
      const cls = Buffer.from(classes, "base64")
      const sec = Buffer.concat([Buffer.from(head, "base64"), cls.map(c => (c & 8 ? 42 : !leanStart ? 0 : c & want ? 2 : 1))])
      // up to `end` only: what follows is custom sections (function names, tool metadata) V8 does not need
      // to run it (a crash's stack trace then numbers Automerge's functions instead of naming them)
      const bytes = Buffer.allocUnsafe(end + sec.length)
      // length bytes at position into bytes at offset; false if the file ends first
      const read = (offset, length, position) =>
        new Promise((resolve, reject) => {
          const next = n => {
            if (n >= length) return resolve(true)
            try {
              readAt(fd, bytes, offset + n, length - n, position + n, (err, r) => (err ? reject(err) : r === 0 ? resolve(false) : next(n + r)))
            } catch (e) {
              reject(e)
            }
          }
          next(0)
        })
      const half = Math.floor((end - at) / 2) // (the code section in two reads: two threads fill it)
      const parts = [read(0, at, 0), read(at + sec.length, half, at), read(at + sec.length + half, end - at - half, at + half)]
      reading = true
      return Promise.allSettled(parts).then(done => {
        try {
          closeSync(fd) // (once no read is under way)
        } catch {
          // (read already)
        }
        if (!done.every(d => d.value === true) || bytes[at + sec.length] !== 10) return undefined // 10: the code section
        sec.copy(bytes, at)
        return bytes
      })
    } finally {
      if (!reading) closeSync(fd)
    }
  }
  // The CLI bundles use Automerge's slim build: compile its WebAssembly here, on V8's background threads,
  // while the main thread loads the CLI, instead of synchronously when Automerge is imported. Once per
  // process, before any command runs.
  // (a short command other than a lean one, `concord status` say, compiles the module as it is: the
  // hints would cost it more than the hashing they speed up)
  let hinted
  if (leanStart || flags.isLongRunning(argv.slice(2))) {
    try {
      hinted = hintedWasm()
    } catch {
      hinted = undefined // the module as it is
    }
  }

  const v8 = require("node:v8")
  for (const flag of flags.v8Flags(argv.slice(2))) v8.setFlagsFromString(flag)
  hinted = await hinted // (undefined after a failed read: the module as it is)

  let wasm
  if (hinted) {
    v8.setFlagsFromString("--experimental-wasm-compilation-hints")
    if (leanStart) {
      v8.setFlagsFromString("--no-wasm-lazy-compilation")
      // No more compiling threads than cores: each thread's memory for compiling is its own (about 350
      // first-touch page faults more per thread, measured on a 2-core VM where each costs ~15 us), and on a
      // machine with no core to spare the extra thread only takes turns with the others.
      v8.setFlagsFromString(`--wasm-num-compilation-tasks=${Math.max(1, require("node:os").availableParallelism())}`)
    }
    wasm = WebAssembly.compile(hinted).catch(() => {
      if (leanStart) v8.setFlagsFromString("--wasm-lazy-compilation")
      return WebAssembly.compile(readFileSync(wasmFile))
    })
  } else wasm = WebAssembly.compile(readFileSync(wasmFile))
  wasm.catch(() => {}) // reported below, by initializeWasm
  const initialize = async ({ initializeWasm }) => {
    const compiled = await wasm
    // Its initialisation probes `typeof Response` / `typeof Request`, which would make Node load its fetch
    // implementation (undici, with a WebAssembly module of its own): hide them while it runs.
    const hidden = ["Response", "Request"].map(k => [k, Object.getOwnPropertyDescriptor(globalThis, k)])
    for (const [k] of hidden) Object.defineProperty(globalThis, k, { value: undefined, configurable: true, writable: true })
    try {
      await initializeWasm(compiled)
    } finally {
      for (const [k, d] of hidden) {
        if (d) Object.defineProperty(globalThis, k, d)
        else delete globalThis[k]
      }
    }
  }

  // a bug, not a refusal: its stack, exit 1
  const crashed = err => {
    process.stderr.write(`concord: ${err?.stack ?? err}\n`)
    return 1
  }
  // The report command's bundle is a script (one function expression) compiled with vm.Script, from V8's
  // code cache of it when dist/cli/lean.cache holds one for this very bundle (its SHA-256 and the cache's
  // own): V8 then neither parses the bundle nor compiles the functions a report runs. The cache is written
  // at build time after a real report (scripts/lean-startup.mjs runs one with CONCORD_WRITE_CODE_CACHE=1).
  // A cache V8 refuses (another Node, other flags) or that is missing or damaged only costs time.
  //
  // V8 compiles the WebAssembly's functions only once the main thread has let it begin (a task V8 runs on
  // the main thread once the module is decoded, in the background): until then the compile waits. So the
  // bundle's files are read first and the main thread yields once, and the functions compile on the
  // background threads while the bundle is compiled and run, not after.
  const loadLean = async name => {
    const vm = require("node:vm")
    const { createRequire } = require("node:module")
    const { pathToFileURL } = require("node:url")
    const file = path.join(__dirname, "..", "dist", "cli", `${name}.js`)
    const bytes = readFileSync(file)
    const cacheFile = file.replace(/\.js$/, ".cache")
    let cache
    try {
      cache = readFileSync(cacheFile)
    } catch {
      // no cache: compiled from the source
    }
    const yieldOnce = () => new Promise(resolve => setImmediate(resolve))
    await yieldOnce()
    const { createHash } = require("node:crypto")
    const sha = b => createHash("sha256").update(b).digest()
    let cachedData
    if (cache) {
      const data = cache.subarray(68)
      if (cache.toString("latin1", 0, 4) === "CCv1" && sha(bytes).equals(cache.subarray(4, 36)) && sha(data).equals(cache.subarray(36, 68))) cachedData = data
    }
    await yieldOnce() // (if the module was not decoded yet at the first)
    const script = new vm.Script(bytes.toString("utf8"), { filename: file, cachedData })
    const module = { exports: {} }
    script.runInThisContext()(module.exports, createRequire(file), module, pathToFileURL(file).href)
    const writeCache = () => {
      const tmp = `${cacheFile}.${process.pid}.tmp`
      try {
        const data = script.createCachedData()
        writeFileSync(tmp, Buffer.concat([Buffer.from("CCv1", "latin1"), sha(bytes), sha(data), data]))
        renameSync(tmp, cacheFile)
      } catch (e) {
        process.stderr.write(`concord: code cache not written: ${e.message}\n`) // the report itself is done
      }
    }
    return { mod: module.exports, writeCache }
  }
  let lean
  if (report) {
    // the report command alone (src/cli/lean.ts), to the store or a running orchestrator's endpoint; its
    // bundle holds its own copy of Automerge's JavaScript, initialised here, if it is the installed version
    const { mod, writeCache } = await loadLean("lean")
    if (mod.automergeVersion === installedAutomerge) {
      // the report's words are parsed and the store's files read while the WebAssembly compiles (the
      // store calls Automerge once it is ready: src/cli/lean.ts)
      const ready = initialize(mod)
      ready.catch(() => {}) // thrown by leanReport, which awaits it
      // Automerge takes random bytes (a document's actor when it is loaded) from
      // globalThis.crypto.getRandomValues, whose first use loads Node's whole Web Crypto implementation
      // (~5 ms, after the WebAssembly is ready): while the report runs, they come from node:crypto's
      // randomFillSync instead (the same generator; node:crypto is loaded already, by the store).
      const webCrypto = Object.getOwnPropertyDescriptor(globalThis, "crypto")
      const { randomFillSync } = require("node:crypto")
      Object.defineProperty(globalThis, "crypto", { value: { getRandomValues: a => randomFillSync(a) }, configurable: true, writable: true })
      const pending = mod.leanReport(argv, ready).finally(() => {
        if (webCrypto) Object.defineProperty(globalThis, "crypto", webCrypto)
        else delete globalThis.crypto
      })
      // stdout and stderr are made now too: the report writes to them at its end, and making them then
      // (a pipe is a socket: node:net and Node's streams are loaded) would add to what follows the wait
      void process.stdout
      void process.stderr
      lean = await pending.catch(err => ({ code: crashed(err) }))
      if ("argv" in lean) {
        argv = lean.argv
        // the full CLI initialises its own copy of Automerge below, not while this one does
        await ready.catch(() => {})
      } else if (lean.code === 0 && process.env.CONCORD_WRITE_CODE_CACHE === "1") writeCache()
    }
  }
  // A one-shot `concord sync URL` starts lean too: the sync command by change exchange alone
  // (src/cli/lean-sync.ts, a script like the report's), its words checked, the server's plan list asked
  // for and the store's files read while the WebAssembly compiles. Help, --watch and --list go to the
  // full CLI at once; so does anything the lean start-up does not take (a usage error, a server without the
  // exchange), before anything was written.
  if (oneShotSync) {
    const { mod, writeCache } = await loadLean("lean-sync")
    if (mod.automergeVersion === installedAutomerge) {
      const ready = initialize(mod)
      ready.catch(() => {}) // thrown by leanSync, which awaits it
      lean = await mod.leanSync(argv, ready).catch(err => ({ code: crashed(err) }))
      if ("argv" in lean) {
        argv = lean.argv
        await ready.catch(() => {})
      } else if (lean.code === 0 && process.env.CONCORD_WRITE_CODE_CACHE === "1") writeCache()
    }
  }
  if (lean && "code" in lean) exit(lean.code)
  else {
    // `concord sync` (not its help, which lists the other commands): its own entry point, which loads
    // only the sync commands (src/cli/sync-main.ts)
    const entry = sync ? import("../dist/cli/sync-main.js") : import("../dist/cli/main.js")
    const [{ main }, automerge] = await Promise.all([entry, import("@automerge/automerge/slim")])
    await initialize(automerge)
    main(argv).then(exit, err => exit(crashed(err)))
  }
}
start()
