/**
 * The CLI's conventions, through the real `concord` process: --version, colour and glyphs only where
 * they belong (TTY, NO_COLOR, TERM=dumb, FORCE_COLOR), one-line usage errors with a hint, and the
 * package's file list.
 */
import { execFile, spawnSync } from "node:child_process"
import { promisify } from "node:util"
import { readFileSync } from "node:fs"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, cleanup, concord, createPlan, ROOT, tempDir } from "../helpers/cli.js"

/** A child process that does not block the test worker (execFile rejects on a non-zero exit). */
const execFileAsync = promisify(execFile)

const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8"))
// Colour decisions must come from each test's own env, not from whatever runs the tests.
const plain = { FORCE_COLOR: undefined, NO_COLOR: undefined, TERM: "xterm-256color" }
const SGR = /\x1b\[[0-9;]*m/

describe("concord --version", () => {
  it("prints the package version for --version and -V, exit 0", async () => {
    const dir = tempDir()
    try {
      for (const flag of ["--version", "-V"]) {
        const r = await concord(dir, [flag])
        expect(r.code).toBe(0)
        expect(r.stdout.trim()).toBe(pkg.version)
        expect(r.stderr).toBe("")
      }
    } finally {
      cleanup(dir)
    }
  })
})

describe("usage errors", () => {
  let dir: string
  beforeAll(() => {
    dir = tempDir()
  })
  afterAll(() => cleanup(dir))

  const cases: [string[], string][] = [
    [["status", "--jsno"], "concord: unknown option '--jsno' (did you mean --json?); see concord status --help"],
    [["stauts"], "concord: unknown command 'stauts' (did you mean status?); see concord --help"],
    [["plan", "create", "x.yaml", "--jsn"], "concord: unknown option '--jsn' (did you mean --json?); see concord plan create --help"],
    [["plan", "craete"], "concord: unknown command 'craete' (did you mean create?); see concord plan --help"],
    [["report"], "concord: missing required argument 'status'; see concord report --help"],
    [["history", "--frobnicate"], "concord: unknown option '--frobnicate'; see concord history --help"],
  ]
  for (const [args, line] of cases) {
    it(`concord ${args.join(" ")}: one line with a hint, exit 2, no help`, async () => {
      const r = await concord(dir, args)
      expect(r.code).toBe(2)
      expect(r.stdout).toBe("")
      expect(r.stderr).toBe(`${line}\n`)
    })
  }

  it("echoes what the user typed neutralised", async () => {
    const r = await concord(dir, ["status", "--\x1b]0;owned\x07"])
    expect(r.code).toBe(2)
    expect(r.stderr).not.toMatch(/[\x00-\x09\x0b-\x1f]/)
    expect(r.stderr).toContain("unknown option '--\\x1b]0;owned\\x07'")
  })
})

describe("colour and Unicode glyphs", () => {
  let dir: string
  beforeAll(async () => {
    dir = tempDir()
    await createPlan(dir, "name: colours\njobs:\n  - name: a\n    run: 'true'\n")
    const r = await concord(dir, ["report", "progress", "half way", "--progress", "50", "--job", "a", "--attempt", "1"])
    expect(r.code).toBe(0)
  })
  afterAll(() => cleanup(dir))

  const status = (env: NodeJS.ProcessEnv) => concord(dir, ["status"], { env: { ...plain, ...env } })

  it("a pipe gets no colour and ASCII bars", async () => {
    const r = await status({})
    expect(r.code).toBe(0)
    expect(r.stdout).not.toMatch(SGR)
    expect(r.stdout).toContain("#####..... ")
    expect(r.stdout).not.toContain("█")
  })

  it("FORCE_COLOR forces colour and Unicode bars on a pipe; FORCE_COLOR=0 does not", async () => {
    const forced = await status({ FORCE_COLOR: "1" })
    expect(forced.stdout).toMatch(SGR)
    expect(forced.stdout).toContain("█████░░░░░")
    const off = await status({ FORCE_COLOR: "0" })
    expect(off.stdout).not.toMatch(SGR)
    expect(off.stdout).toContain("#####.....")
  })

  it("FORCE_COLOR wins over NO_COLOR and TERM=dumb", async () => {
    const r = await status({ FORCE_COLOR: "1", NO_COLOR: "1", TERM: "dumb" })
    expect(r.stdout).toMatch(SGR)
  })

  // A real terminal, from util-linux `script` (Linux CI); skipped where it is missing.
  const hasScript = process.platform === "linux" && spawnSync("script", ["--version"]).status === 0
  const onTty = async (env: NodeJS.ProcessEnv) => {
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} status`
    const r = await execFileAsync("script", ["-q", "-e", "-c", cmd, "/dev/null"], {
      cwd: dir,
      env: { ...process.env, CONCORD_STORE: dir, ...plain, ...env },
      encoding: "utf8",
      timeout: 60_000,
    })
    return r.stdout
  }
  it.skipIf(!hasScript)("a TTY gets colour and Unicode bars", async () => {
    const s = await onTty({})
    expect(s).toMatch(SGR)
    expect(s).toContain("█████░░░░░")
  })
  it.skipIf(!hasScript)("a TTY with NO_COLOR or TERM=dumb gets neither", async () => {
    for (const env of [{ NO_COLOR: "1" }, { TERM: "dumb" }]) {
      const s = await onTty(env)
      expect(s).not.toMatch(SGR)
      expect(s).toContain("#####.....")
      expect(s).not.toContain("█")
    }
  })
})

describe("the package", () => {
  it("packs dist, bin, README and package.json only, with one bin: concord", async () => {
    const npm = process.platform === "win32" ? "npm.cmd" : "npm"
    // --ignore-scripts: list what the current build would ship without rebuilding dist under other tests.
    const r = await execFileAsync(npm, ["pack", "--dry-run", "--json", "--ignore-scripts"], {
      cwd: ROOT,
      encoding: "utf8",
      shell: process.platform === "win32",
    })
    const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path)
    for (const f of [
      "package.json",
      "README.md",
      "bin/concord.js",
      "bin/concord",
      "dist/cli/main.js",
      "dist/src/index.js",
      "dist/src/index.d.ts",
      "dist/dashboard/app.js",
      "dist/dashboard/index.html",
    ]) {
      expect(files).toContain(f)
    }
    const outside = files.filter(f => !/^(dist\/(src|cli|dashboard)\/|bin\/|README\.md$|LICENSE$|package\.json$|npm-shrinkwrap\.json$)/.test(f))
    expect(outside).toEqual([])
    expect(files.filter(f => f.endsWith(".map") || (f.endsWith(".ts") && !f.endsWith(".d.ts")))).toEqual([])
    expect(pkg.bin).toEqual({ concord: "bin/concord.js" })
    expect(pkg.scripts.prepack).toBe("node scripts/prepack.mjs")
  })
})
