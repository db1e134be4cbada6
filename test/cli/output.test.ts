/** The one neutraliser and the one colour decision of src/cli/output.ts, as pure functions. */
import { describe, expect, it } from "vitest"
import { concat, jsonText, neutralize, paint, richOutput, table } from "../../src/cli/output.js"

describe("neutralize", () => {
  it("shows every control character, DEL, C1, bidi control and line separator as an escape", () => {
    expect(neutralize("a\x1b[2Jb\x07\x00\x7f\u009b\u202e\u2066\u2028\u200f")).toBe("a\\x1b[2Jb\\x07\\x00\\x7f\\x9b\\u202e\\u2066\\u2028\\u200f")
    expect(neutralize("over\rwrite")).toBe("over\\rwrite")
    for (let c = 0; c < 0x20; c++) if (c !== 9 && c !== 10) expect(neutralize(String.fromCharCode(c))).toMatch(/^\\(x[0-9a-f]{2}|r)$/)
    for (let c = 0x7f; c < 0xa0; c++) expect(neutralize(String.fromCharCode(c))).toMatch(/^\\x[0-9a-f]{2}$/)
  })
  it("keeps newlines and tabs unless one line is asked for; leaves other text alone", () => {
    expect(neutralize("a\n\tb")).toBe("a\n\tb")
    expect(neutralize("a\n\tb", { multiline: false })).toBe("a\\n\\tb")
    expect(neutralize("héllo wörld ✓ 日本 █░")).toBe("héllo wörld ✓ 日本 █░")
  })
})

describe("richOutput", () => {
  const tty = { isTTY: true }
  const pipe = { isTTY: false }
  it("is on only for a TTY without NO_COLOR and with TERM other than dumb", () => {
    expect(richOutput(tty, {})).toBe(true)
    expect(richOutput(tty, { TERM: "xterm" })).toBe(true)
    expect(richOutput(pipe, {})).toBe(false)
    expect(richOutput(tty, { NO_COLOR: "1" })).toBe(false)
    expect(richOutput(tty, { NO_COLOR: "" })).toBe(true) // no-color.org: present and not empty
    expect(richOutput(tty, { TERM: "dumb" })).toBe(false)
  })
  it("FORCE_COLOR forces it either way", () => {
    expect(richOutput(pipe, { FORCE_COLOR: "1" })).toBe(true)
    expect(richOutput(pipe, { FORCE_COLOR: "" })).toBe(true)
    expect(richOutput(tty, { FORCE_COLOR: "1", NO_COLOR: "1", TERM: "dumb" })).toBe(true)
    expect(richOutput(tty, { FORCE_COLOR: "0" })).toBe(false)
    expect(richOutput(tty, { FORCE_COLOR: "false" })).toBe(false)
  })
})

describe("table and styled text", () => {
  it("aligns by the neutralised width and keeps each row on one line", () => {
    const rows = table([
      ["A", "B"],
      ["x\x1b[2J\ny", paint(31, "red")],
    ])
    expect(rows.map(String)).toEqual(["A            B", "x\\x1b[2J\\ny  red"])
  })
  it("a painted value is neutralised too, and String() never carries colour", () => {
    expect(String(concat("a", paint(32, "\x1b]0;t\x07")))).toBe("a\\x1b]0;t\\x07")
  })
})

describe("jsonText", () => {
  it("keeps the exact text while escaping what a terminal would act on", () => {
    const v = { m: "a\x1b[2J\u009b\u202e\u2028z" }
    const text = jsonText(v)
    expect(text).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e\u2028]/)
    expect(JSON.parse(text)).toEqual(v)
  })
})
