/**
 * What a one-shot `concord report` reads at start-up to go faster (bin/concord.js) only ever costs time
 * when it is missing, damaged or made for something else: the report is taken exactly as without it
 * (same output, exit code, stored once). Each case runs an installed copy of bin/ and dist/ with one
 * such file spoiled, against its own copy of one store.
 */
import { spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { readReports } from "../../src/doc/reports.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { namedFunctions } from "../../scripts/lean-startup.mjs"
import { cleanup, concord, ROOT, runNode, spoiledInstall, tempDir } from "../helpers/cli.js"

let dir = ""
let base = ""
let plan = ""
/** the outcome through an untouched copy, the reference for every case */
let good: Awaited<ReturnType<typeof report>>

beforeAll(async () => {
  dir = tempDir("concord-startup-")
  base = path.join(dir, "base")
  writeFileSync(path.join(dir, "p.yaml"), "name: p\njobs:\n  - { name: A, run: 'true' }\n")
  const r = await concord(base, ["plan", "create", path.join(dir, "p.yaml")], { cwd: dir })
  expect(r.code, r.stderr).toBe(0)
  plan = r.stdout.trim()
  good = await report(
    install(() => undefined),
    "good"
  )
  expect(good.code, good.stderr).toBe(0)
  expect(good.stored).toBe(1)
}, 60_000)
afterAll(() => cleanup(dir))

/** An installed copy of concord (bin/, dist/cli/, the checkout's node_modules), changed by `spoil`. */
let n = 0
const install = (spoil: (cli: string) => void): string => spoiledInstall(dir, spoil)

/**
 * `concord report` through `bin` on a fresh copy of the store: its outcome and the reports stored. With
 * `builtins`, also the Node built-ins the process loaded (test/cli/builtins-log.cjs).
 */
async function report(bin: string, message: string, opts: { builtins?: boolean } = {}) {
  const store = path.join(dir, `store-${++n}`)
  cpSync(base, store, { recursive: true })
  const log = path.join(dir, `builtins-${n}.log`)
  const node = opts.builtins ? ["-r", path.join(import.meta.dirname, "builtins-log.cjs")] : []
  const r = await runNode([...node, bin, "report", "progress", message, "--job", "A", "--plan", plan, "--json"], {
    cwd: dir,
    env: { CONCORD_STORE: store, ...(opts.builtins ? { CONCORD_TEST_BUILTINS_LOG: log } : {}) },
  })
  const stored = readReports(await new PlanStore(store).loadReports(plan, "A")).filter(x => x.message === message)
  const builtins = opts.builtins ? readFileSync(log, "utf8").split("\n") : []
  return { code: r.code, stderr: r.stderr, out: r.code === 0 ? JSON.parse(r.stdout) : r.stdout, stored: stored.length, builtins }
}

/** A report through an installed copy spoiled by `spoil` is taken as through an untouched one, once. */
async function takenAsWithout(what: string, spoil: (cli: string) => void) {
  const spoiled = await report(install(spoil), `spoiled ${what}`)
  expect(spoiled.code, spoiled.stderr).toBe(0)
  expect(spoiled.stderr).toBe("")
  expect({ ...spoiled.out, message: "" }).toEqual({ ...good.out, message: "" })
  expect(spoiled.stored).toBe(1)
}

const HINTS = "wasm-hints.json"

describe("the WebAssembly compilation hints (dist/cli/wasm-hints.json)", () => {
  it("are recorded by the build, for this V8 and the installed Automerge", () => {
    const hints = JSON.parse(readFileSync(path.join(ROOT, "dist", "cli", HINTS), "utf8"))
    expect(hints.v8).toBe(process.versions.v8.split(".").slice(0, 2).join("."))
    expect(hints.eager).toBeGreaterThan(100)
    const wasm = path.join(ROOT, "node_modules", "@automerge", "automerge", "dist", "automerge.wasm")
    expect(hints.size).toBe(readFileSync(wasm).length)
  })

  it("have V8 compile Automerge's SHA-256 ahead with the optimizing compiler, and nothing else (a report runs on the baseline compiler)", async () => {
    const wasm = readFileSync(path.join(ROOT, "node_modules", "@automerge", "automerge", "dist", "automerge.wasm"))
    const sha = namedFunctions(wasm, /::sha256::compress256$/)
    expect(sha.length).toBe(1)
    const store = path.join(dir, "store-traced")
    cpSync(base, store, { recursive: true })
    const r = await runNode(
      ["--trace-wasm-compilation-times", path.join(ROOT, "bin", "concord.js"), "report", "progress", "traced", "--job", "A", "--plan", plan],
      {
        cwd: dir,
        env: { CONCORD_STORE: store },
      }
    )
    expect(r.code, r.stderr).toBe(0)
    const compiled = [...r.stdout.matchAll(/^Compiled function \S*#(\d+) using (\w+)/gm)].map(m => [Number(m[1]), m[2]] as const)
    expect(compiled.filter(([, tier]) => tier === "TurboFan").map(([f]) => f)).toEqual(sha)
    expect(compiled.filter(([f]) => f === sha[0]).map(([, tier]) => tier)).toEqual(["TurboFan"])
  }, 60_000)

  it("have a long-lived command (`status --watch`) compile that SHA-256 ahead optimized too, and a short one (`status`) compile the module as it is", async () => {
    const wasm = readFileSync(path.join(ROOT, "node_modules", "@automerge", "automerge", "dist", "automerge.wasm"))
    const sha = namedFunctions(wasm, /::sha256::compress256$/)
    const turbofan = (out: string) => [...out.matchAll(/^Compiled function \S*#(\d+) using TurboFan/gm)].map(m => Number(m[1]))
    const trace = ["--trace-wasm-compilation-times", path.join(ROOT, "bin", "concord.js")]
    const short = await runNode([...trace, "status", plan], { cwd: dir, env: { CONCORD_STORE: base } })
    expect(short.code, short.stderr).toBe(0)
    expect(turbofan(short.stdout)).toEqual([])
    // a watch runs until stopped: stopped once V8 said it compiled the function (or after 20 s)
    const child = spawn(process.execPath, [...trace, "status", plan, "--watch"], { cwd: dir, env: { ...process.env, CONCORD_STORE: base } })
    let out = ""
    await new Promise<void>(resolve => {
      const t = setTimeout(resolve, 20_000)
      child.stdout.on("data", d => {
        out += d
        if (turbofan(out).length > 0) {
          clearTimeout(t)
          resolve()
        }
      })
      child.on("exit", () => resolve())
    })
    child.kill("SIGKILL")
    expect(turbofan(out)).toEqual(sha)
  }, 60_000)

  it.each([
    ["missing", (cli: string) => rmSync(path.join(cli, HINTS))],
    ["empty", (cli: string) => writeFileSync(path.join(cli, HINTS), "")],
    ["half-written", (cli: string) => writeFileSync(path.join(cli, HINTS), readFileSync(path.join(cli, HINTS), "utf8").slice(0, 100))],
    [
      "refused by V8 (a hint count that does not add up)",
      (cli: string) => {
        const h = JSON.parse(readFileSync(path.join(cli, HINTS), "utf8"))
        const head = Buffer.from(h.head, "base64")
        head[head.length - 2] ^= 1 // the count's low bits (leb128)
        writeFileSync(path.join(cli, HINTS), JSON.stringify({ ...h, head: head.toString("base64") }))
      },
    ],
    [
      "with too few hints for the module",
      (cli: string) => {
        const h = JSON.parse(readFileSync(path.join(cli, HINTS), "utf8"))
        const classes = Buffer.from(h.classes, "base64")
        writeFileSync(path.join(cli, HINTS), JSON.stringify({ ...h, classes: classes.subarray(0, classes.length - 1000).toString("base64") }))
      },
    ],
    [
      "for another WebAssembly file (size, place)",
      (cli: string) => {
        const h = JSON.parse(readFileSync(path.join(cli, HINTS), "utf8"))
        writeFileSync(path.join(cli, HINTS), JSON.stringify({ ...h, size: h.size + 1, at: h.at + 7 }))
      },
    ],
    [
      "for another Automerge and another V8",
      (cli: string) => {
        const h = JSON.parse(readFileSync(path.join(cli, HINTS), "utf8"))
        writeFileSync(path.join(cli, HINTS), JSON.stringify({ ...h, automerge: "0.0.1", v8: "1.0" }))
      },
    ],
  ])("%s: the report is taken as with them, once", takenAsWithout, 60_000)
})

const CACHE = "lean.cache"
/** Rewrite the cache file with `data` as V8's part, its checksums made right again. */
const resealed = (cli: string, change: (data: Buffer) => Buffer) => {
  const c = readFileSync(path.join(cli, CACHE))
  const data = change(Buffer.from(c.subarray(68)))
  const sha = (b: Buffer) => createHash("sha256").update(b).digest()
  writeFileSync(path.join(cli, CACHE), Buffer.concat([c.subarray(0, 4), sha(readFileSync(path.join(cli, "lean.js"))), sha(data), data]))
}

describe("V8's code cache of the report's bundle (dist/cli/lean.cache)", () => {
  it("is written by the build, for this bundle", () => {
    const c = readFileSync(path.join(ROOT, "dist", "cli", CACHE))
    expect(c.toString("latin1", 0, 4)).toBe("CCv1")
    expect(c.subarray(4, 36)).toEqual(
      createHash("sha256")
        .update(readFileSync(path.join(ROOT, "dist", "cli", "lean.js")))
        .digest()
    )
    expect(c.subarray(36, 68)).toEqual(createHash("sha256").update(c.subarray(68)).digest())
    expect(c.length).toBeGreaterThan(10_000)
  })

  it.each([
    ["missing", (cli: string) => rmSync(path.join(cli, CACHE))],
    ["empty", (cli: string) => writeFileSync(path.join(cli, CACHE), "")],
    ["half-written", (cli: string) => writeFileSync(path.join(cli, CACHE), readFileSync(path.join(cli, CACHE)).subarray(0, 50_000))],
    [
      "damaged (one byte of V8's data changed)",
      (cli: string) => {
        const c = readFileSync(path.join(cli, CACHE))
        c[c.length >> 1] ^= 0x55
        writeFileSync(path.join(cli, CACHE), c)
      },
    ],
    [
      "made for another bundle",
      (cli: string) => writeFileSync(path.join(cli, "lean.js"), readFileSync(path.join(cli, "lean.js"), "utf8").replace("(function (", "(function  ( ")),
    ],
    [
      "refused by V8 (made with other V8 flags)",
      (cli: string) =>
        // V8's header: magic number, V8 version hash, source hash, flag hash (bytes 12-15), ...
        resealed(cli, data => {
          data.writeUInt32LE((data.readUInt32LE(12) ^ 0x5a5a5a5a) >>> 0, 12)
          return data
        }),
    ],
    ["refused by V8 (not a code cache at all)", (cli: string) => resealed(cli, data => Buffer.alloc(data.length, 7))],
  ])("%s: the report is taken as with it, once", takenAsWithout, 60_000)
})

/**
 * concord installed as a project's dependency: its bin/ and dist/cli/ in node_modules/concord-plan, its
 * dependencies beside it (the checkout's, linked); `automerge` may replace Automerge's package by a
 * changed copy (its package.json, its dist/ linked).
 */
function installAsDependency(automerge?: (pkg: Record<string, any>, dir: string) => void): string {
  const modules = path.join(dir, `project-${++n}`, "node_modules")
  const own = path.join(modules, "concord-plan")
  mkdirSync(path.join(own, "dist"), { recursive: true })
  cpSync(path.join(ROOT, "bin"), path.join(own, "bin"), { recursive: true })
  cpSync(path.join(ROOT, "dist", "cli"), path.join(own, "dist", "cli"), { recursive: true })
  cpSync(path.join(ROOT, "package.json"), path.join(own, "package.json"))
  const link = (from: string, to: string) => {
    for (const e of readdirSync(from)) {
      if (e === ".bin" || e === ".cache" || (automerge && e === "@automerge")) continue
      symlinkSync(path.join(from, e), path.join(to, e), "dir")
    }
  }
  link(path.join(ROOT, "node_modules"), modules)
  if (automerge) {
    const scope = path.join(ROOT, "node_modules", "@automerge")
    mkdirSync(path.join(modules, "@automerge", "automerge"), { recursive: true })
    for (const e of readdirSync(scope)) if (e !== "automerge") symlinkSync(path.join(scope, e), path.join(modules, "@automerge", e), "dir")
    const pkg = JSON.parse(readFileSync(path.join(scope, "automerge", "package.json"), "utf8"))
    automerge(pkg, path.join(modules, "@automerge", "automerge"))
    writeFileSync(path.join(modules, "@automerge", "automerge", "package.json"), JSON.stringify(pkg))
    symlinkSync(path.join(scope, "automerge", "dist"), path.join(modules, "@automerge", "automerge", "dist"), "dir")
  }
  return path.join(own, "bin", "concord.js")
}

describe("Automerge's WebAssembly, found where it is installed", () => {
  const resolver = "NativeModule internal/modules/esm/resolve"

  it("beside concord in a project's node_modules: found from its package.json, without Node's package-exports resolver", async () => {
    const r = await report(installAsDependency(), "as a dependency", { builtins: true })
    expect(r.code, r.stderr).toBe(0)
    expect({ ...r.out, message: "" }).toEqual({ ...good.out, message: "" })
    expect(r.stored).toBe(1)
    expect(r.builtins).toContain("NativeModule crypto")
    expect(r.builtins).not.toContain(resolver)
  }, 60_000)

  it("an export that is not a plain file: found by require.resolve, the report taken as usual", async () => {
    const bin = installAsDependency(pkg => {
      pkg.exports["./automerge.wasm"] = { default: pkg.exports["./automerge.wasm"] }
    })
    const r = await report(bin, "resolved by node", { builtins: true })
    expect(r.code, r.stderr).toBe(0)
    expect({ ...r.out, message: "" }).toEqual({ ...good.out, message: "" })
    expect(r.stored).toBe(1)
    expect(r.builtins).toContain(resolver)
  }, 60_000)

  it("a WebAssembly file V8 cannot compile: the report's words are still checked first; a valid report is a crash that writes nothing", async () => {
    const bin = installAsDependency((pkg, dir) => {
      writeFileSync(
        path.join(dir, "broken.wasm"),
        readFileSync(path.join(ROOT, "node_modules", "@automerge", "automerge", "dist", "automerge.wasm")).subarray(0, 4096)
      )
      pkg.exports["./automerge.wasm"] = "./broken.wasm"
    })
    const r = await report(bin, "never stored")
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^concord: CompileError/)
    expect(r.stored).toBe(0)
    // a bad status is refused as usual, before Automerge is needed
    const store = path.join(dir, `store-${++n}`)
    cpSync(base, store, { recursive: true })
    const bad = await runNode([bin, "report", "bogus", "--job", "A", "--plan", plan], { cwd: dir, env: { CONCORD_STORE: store } })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/^concord: invalid report status "bogus"/)
  }, 60_000)
})
