/**
 * A one-shot `concord sync URL` starts lean (bin/concord.js loads src/cli/lean-sync.ts: the sync command
 * by change exchange alone): it must give exactly the full CLI's outcome. Each case runs twice, on two
 * copies of one store against two sync servers over copies of one server store: once through `concord`,
 * once through the full CLI alone (test/cli/full-cli.mjs). Same exit code, same output (but for the
 * server's address and the time taken), same plans on the server afterwards, refusals included; and a
 * server without the change exchange gets the full CLI's sync protocol, with nothing written before.
 */
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { SyncServer } from "../../src/sync/net/server.js"
import { addToken, defaultTokensFile } from "../../src/sync/net/tokens.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { BIN, cleanup, concord, type RunResult, runNode, spoiledInstall, tempDir } from "../helpers/cli.js"

const FULL = path.join(import.meta.dirname, "full-cli.mjs")
const MODULE_LOG = path.join(import.meta.dirname, "module-log.mjs")
let dir = ""
let base = ""
let serverBase = ""
let plan = ""
let token = ""

beforeAll(async () => {
  dir = tempDir("concord-lean-sync-")
  base = path.join(dir, "base")
  serverBase = path.join(dir, "server-base")
  writeFileSync(path.join(dir, "p.yaml"), "name: synced\njobs:\n  - { name: A, run: 'true' }\n")
  const r = await concord(base, ["plan", "create", path.join(dir, "p.yaml")], { cwd: dir })
  expect(r.code, r.stderr).toBe(0)
  plan = r.stdout.trim()
  const rep = await concord(base, ["report", "progress", "before the sync", "--job", "A", "--plan", plan], { cwd: dir })
  expect(rep.code, rep.stderr).toBe(0)
  token = (await addToken(defaultTokensFile(serverBase), { plans: ["*"], role: "admin" })).secret
}, 60_000)
afterAll(() => cleanup(dir))

let n = 0
/** A sync server over a fresh copy of the server store; `exchange: false` as a concord from before it. */
async function serve(exchange = true) {
  const storeDir = path.join(dir, `server-${++n}`)
  cpSync(serverBase, storeDir, { recursive: true })
  const server = new SyncServer({ storeDir, host: "127.0.0.1", port: 0, log: () => {}, exchange })
  const { url } = await server.start()
  return { server, url, storeDir }
}

/** What a run printed, with its store, the server's address and the time taken spelled alike. */
const outcome = (r: RunResult, store: string, url: string) => {
  const same = (s: string) =>
    s
      .replaceAll(store, "<store>")
      .replaceAll(url, "<url>")
      .replaceAll(new URL(url).host, "<host>")
      .replace(/ in \d+\.\ds$/m, " in <t>s")
      .replace(/"ms": ?\d+/, '"ms": 0')
  return { code: r.code, stdout: same(r.stdout), stderr: same(r.stderr) }
}

/** `concord ARGS` (ARGS made from the server's URL) through bin/concord.js and through the full CLI. */
async function both(args: (url: string, store: string) => string[], opts: { exchange?: boolean; env?: NodeJS.ProcessEnv; bin?: string } = {}) {
  const lean = path.join(dir, `lean-${++n}`)
  const full = path.join(dir, `full-${n}`)
  cpSync(base, lean, { recursive: true })
  cpSync(base, full, { recursive: true })
  const [sl, sf] = await Promise.all([serve(opts.exchange), serve(opts.exchange)])
  try {
    const log = path.join(dir, `modules-${n}.log`)
    writeFileSync(log, "")
    const env = { CONCORD_TOKEN: "", ...opts.env }
    const [l, f] = await Promise.all([
      runNode([`--import=${MODULE_LOG}`, opts.bin ?? BIN, ...args(sl.url, lean)], {
        cwd: dir,
        env: { ...env, CONCORD_STORE: lean, CONCORD_TEST_MODULE_LOG: log },
      }),
      runNode([FULL, ...args(sf.url, full)], { cwd: dir, env: { ...env, CONCORD_STORE: full } }),
    ])
    const loaded = readFileSync(log, "utf8").split("\n")
    const plansThere = async (s: string) => (await new PlanStore(s).listPlans()).map(p => p.id)
    return {
      lean: outcome(l, lean, sl.url),
      full: outcome(f, full, sf.url),
      /** the full CLI's sync entry point or automerge-repo was loaded: the lean start-up did not take it */
      fellBack: loaded.some(u => /\/dist\/cli\/sync-main\.js$/.test(u)),
      repo: loaded.some(u => /automerge-repo/.test(u)),
      onServer: { lean: await plansThere(sl.storeDir), full: await plansThere(sf.storeDir) },
      bases: existsSync(path.join(lean, "sync-bases")),
    }
  } finally {
    await Promise.all([sl.server.close(), sf.server.close()])
  }
}

describe("the lean sync start-up gives the full CLI's outcome", () => {
  it.each([
    ["a first sync that pushes the plan", (url: string) => ["sync", url, "--token", token]],
    ["one plan, as JSON", (url: string) => ["sync", url, "--token", token, "--plan", plan, "--json", "--quiet"]],
    ["the token from $CONCORD_TOKEN, the store from --store", (url: string, store: string) => ["--store", store, "sync", url]],
  ])(
    "%s",
    async (_what, args) => {
      const r = await both(args, { env: args("", "").includes("--token") ? {} : { CONCORD_TOKEN: token } })
      expect(r.lean.code, r.lean.stderr).toBe(0)
      expect(r.lean).toEqual(r.full)
      expect(r.fellBack).toBe(false)
      expect(r.repo).toBe(false)
      expect(r.onServer.lean).toEqual([plan])
      expect(r.onServer.full).toEqual([plan])
    },
    60_000
  )

  it.each([
    ["a URL that is not one", () => ["sync", "ftp://x", "--token", "t"], 2, /invalid server URL "ftp:\/\/x"/],
    ["no token", (url: string) => ["sync", url], 2, /no token: use --token T or set CONCORD_TOKEN/],
    ["a bad --timeout", (url: string) => ["sync", url, "--token", "t", "--timeout", "0"], 2, /invalid --timeout "0"/],
    ["a wrong token", (url: string) => ["sync", url, "--token", "wrong"], 1, /refused the token \(HTTP 401/],
    ["a plan neither here nor there", (url: string) => ["sync", url, "--token", token, "--plan", "nope"], 2, /no plan "nope"/],
    ["a server that is not there", () => ["sync", "http://127.0.0.1:1", "--token", "t"], 1, /cannot reach the server at 127\.0\.0\.1:1/],
  ])(
    "refused: %s",
    async (_what, args, code, message) => {
      const r = await both(args)
      expect(r.lean.code).toBe(code)
      expect(r.lean.stderr).toMatch(message)
      expect(r.lean.stdout).toBe("")
      expect(r.lean).toEqual(r.full)
      expect(r.fellBack).toBe(false)
      expect(r.onServer.lean).toEqual([])
    },
    60_000
  )

  it("a server without the change exchange: the full CLI syncs through the sync protocol, nothing written before", async () => {
    const r = await both(url => ["sync", url, "--token", token], { exchange: false })
    expect(r.lean.code, r.lean.stderr).toBe(0)
    expect(r.lean).toEqual(r.full)
    expect(r.fellBack).toBe(true)
    expect(r.onServer.lean).toEqual([plan])
    expect(r.bases).toBe(false) // the lean start-up's exchange wrote no record (the sync protocol keeps none)
  }, 60_000)

  it("leaves --list and a usage error to the full CLI, untouched", async () => {
    const list = await both(url => ["sync", url, "--token", token, "--list"])
    expect(list.lean.code, list.lean.stderr).toBe(0)
    expect(list.lean).toEqual(list.full)
    expect(list.fellBack).toBe(true)
    const usage = await both(url => ["sync", url, "--tokn", token])
    expect(usage.lean.code).toBe(2)
    expect(usage.lean).toEqual(usage.full)
    expect(usage.fellBack).toBe(true)
  }, 60_000)

  it.each([
    [
      "no compilation hints and no code cache",
      (cli: string) => ["wasm-hints.json", "lean-sync.cache"].forEach(f => rmSync(path.join(cli, f), { force: true })),
    ],
    [
      "a half-written code cache",
      (cli: string) => writeFileSync(path.join(cli, "lean-sync.cache"), readFileSync(path.join(cli, "lean-sync.cache")).subarray(0, 40_000)),
    ],
    [
      "a damaged code cache (one byte of V8's data changed)",
      (cli: string) => {
        const c = readFileSync(path.join(cli, "lean-sync.cache"))
        c[c.length - 100] ^= 0xff
        writeFileSync(path.join(cli, "lean-sync.cache"), c)
      },
    ],
    ["empty compilation hints", (cli: string) => writeFileSync(path.join(cli, "wasm-hints.json"), "")],
  ])(
    "start-up files gone wrong (%s) only cost time: the same sync",
    async (_what, spoil) => {
      const r = await both(url => ["sync", url, "--token", token], { bin: spoiledInstall(dir, spoil) })
      expect(r.lean.code, r.lean.stderr).toBe(0)
      expect(r.lean).toEqual(r.full)
      expect(r.fellBack).toBe(false)
      expect(r.onServer.lean).toEqual([plan])
    },
    60_000
  )
})
