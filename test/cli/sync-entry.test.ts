/**
 * `concord sync` starts from an entry point of its own (src/cli/sync-main.ts, routed by bin/concord.js):
 * the sync commands alone, none of the other commands' code; the same words, errors and exit codes as
 * the full CLI; its help (which lists the other commands) from the full CLI.
 */
import { readFileSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, cleanup, runNode, tempDir } from "../helpers/cli.js"

const MODULE_LOG = path.join(import.meta.dirname, "module-log.mjs")
let dir = ""
beforeAll(() => {
  dir = tempDir("concord-sync-entry-")
})
afterAll(() => cleanup(dir))

/** Run `concord ARGS`; the exit code, stderr and the concord bundles it loaded (dist/cli/*.js names). */
async function run(args: string[]) {
  const log = path.join(dir, "modules.log")
  writeFileSync(log, "")
  const r = await runNode([`--import=${MODULE_LOG}`, BIN, ...args], { cwd: dir, env: { CONCORD_STORE: path.join(dir, "store"), CONCORD_TEST_MODULE_LOG: log } })
  const bundles = readFileSync(log, "utf8")
    .split("\n")
    .filter(u => /\/dist\/cli\/[^/]+\.js$/.test(u))
    .map(u => path.basename(u))
  return { code: r.code, stderr: r.stderr, stdout: r.stdout, bundles }
}

describe("concord sync's own entry point", () => {
  it("loads the sync commands alone, with the full CLI's words and errors", async () => {
    for (const args of [["sync"], ["--store", path.join(dir, "s"), "sync"], [`--store=${path.join(dir, "s")}`, "sync"]]) {
      const r = await run(args)
      expect(r.code).toBe(2)
      expect(r.stderr.trim()).toBe("concord: missing required argument 'url'; see concord sync --help")
      expect(r.bundles).toContain("sync-main.js")
      expect(r.bundles).not.toContain("main.js")
    }
    const bad = await run(["sync", "ws://127.0.0.1:1", "--tokn", "x"])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/unknown option '--tokn' \(did you mean --token\?\); see concord sync --help/)
  })

  it("leaves help, and every other command, to the full CLI", async () => {
    const help = await run(["sync", "--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/Usage: concord sync/)
    expect(help.bundles).toContain("main.js")
    expect(help.bundles).not.toContain("sync-main.js")
    const status = await run(["status", "--json"])
    expect(status.bundles).toContain("main.js")
    expect(status.bundles).not.toContain("sync-main.js")
  })
})
