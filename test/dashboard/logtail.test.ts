/** The dashboard's log reader: only files under the store's logs/, escapes removed, tail then follow. */
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { followLog, logFile, printable } from "../../src/dashboard/logtail.js"

const root = mkdtempSync(path.join(os.tmpdir(), "concord-logtail-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

describe("log tail", () => {
  it("refuses a recorded log path outside the store's logs directory", () => {
    expect(logFile(root, "logs/p/a.1.log")).toEqual({ file: path.join(root, "logs/p/a.1.log") })
    for (const bad of ["../etc/passwd", "/etc/shadow", "logs/../tokens.json", "logs", "logs/../../x"]) {
      expect(logFile(root, bad)).toHaveProperty("error")
    }
  })

  it("strips terminal escapes and control characters, keeps newlines and tabs", () => {
    expect(printable("\x1b[31mred\x1b[0m\tok\r\nnext\x07\x1b]0;title\x07\x00")).toBe("red\tok\nnext")
  })

  it("sends the tail from a line start, then every append, and waits for a file that does not exist yet", async () => {
    const dir = path.join(root, "logs", "p")
    mkdirSync(dir, { recursive: true })
    const file = path.join(dir, "a.1.log")
    const later = path.join(dir, "b.1.log")
    writeFileSync(file, `${"x".repeat(100)}\nline one\n`)
    let got = ""
    let gotLater = ""
    const t = followLog(file, s => (got += s), { tailBytes: 20, pollMs: 50 })
    const t2 = followLog(later, s => (gotLater += s), { pollMs: 50 })
    try {
      await expect.poll(() => got, { timeout: 5000 }).toBe("line one\n")
      appendFileSync(file, "line two \x1b[1mbold\x1b[0m\n")
      await expect.poll(() => got, { timeout: 5000 }).toBe("line one\nline two bold\n")
      writeFileSync(later, "born\n")
      await expect.poll(() => gotLater, { timeout: 5000 }).toBe("born\n")
    } finally {
      t.close()
      t2.close()
    }
  })
})
