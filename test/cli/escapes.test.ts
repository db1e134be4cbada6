/**
 * Terminal escapes in anything a job, a plan file or a server can write (report messages, plan names,
 * error messages) never reach a human's terminal raw, through every human output of the real CLI
 * process; JSON output keeps the exact text.
 */
import { chmodSync, writeFileSync } from "node:fs"
import http from "node:http"
import type { AddressInfo } from "node:net"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cleanup, concord, createPlan, statusJson, tempDir } from "../helpers/cli.js"

// Clear screen, set the window title, OSC 8 hyperlink, bell, backspace, carriage return (overwrites
// the line), DEL, a C1 CSI (U+009B), a right-to-left override and isolate, and a line separator.
const EVIL = "A\x1b[2J\x1b]0;owned\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\x08\r\x7f\u009b31m\u202eRTL\u2066iso\u2069\u2028Z"
const EVIL_NAME = "plan\x1b]0;title\x07\u202e"

/** A raw control character of any kind, other than newline (and tab, which we never print either). */
// eslint-disable-next-line no-control-regex
const RAW = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/

const plainEnv = { FORCE_COLOR: undefined, NO_COLOR: undefined }
/** A YAML double-quoted string holding exactly `s` (YAML wants DEL and C1 escaped too). */
const yamlString = (s: string) => JSON.stringify(s).replace(/[\x7f-\x9f]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)

describe("escapes in human output", () => {
  let dir: string
  let id: string
  beforeAll(async () => {
    dir = tempDir()
    id = await createPlan(dir, `name: ${yamlString(EVIL_NAME)}\njobs:\n  - name: a\n    run: "true"\n  - name: b\n    run: "true"\n`)
    const r = await concord(dir, ["report", "working", EVIL, "--plan", id, "--job", "a", "--attempt", "1"])
    expect(r.code).toBe(0)
    expect(r.stdout).not.toMatch(RAW)
  })
  afterAll(() => cleanup(dir))

  it("status shows the message and plan name with their escapes made visible", async () => {
    for (const env of [plainEnv, { FORCE_COLOR: "1" }]) {
      const r = await concord(dir, ["status", id], { env })
      expect(r.code).toBe(0)
      // Only our own colour codes, when forced: take them out, then nothing raw may remain.
      const text = r.stdout.replace(/\x1b\[[0-9;]*m/g, "")
      expect(text).not.toMatch(RAW)
      expect(text).toContain("Plan plan\\x1b]0;title\\x07\\u202e")
      expect(text).toContain("A\\x1b[2J\\x1b]0;owned\\x07")
      expect(text).toContain("\\x08 \\x7f\\x9b31")
    }
  })

  it("status --json, plan list --json and history --json keep the exact text", async () => {
    const s = await statusJson(dir, id)
    expect(s.name).toBe(EVIL_NAME)
    expect(s.jobs.find((j: any) => j.name === "a").lastReport.message).toBe(EVIL)
    const h = await concord(dir, ["history", id, "--json"])
    expect(JSON.parse(h.stdout).some((e: any) => e.did.includes(EVIL_NAME))).toBe(true)
    // And the JSON text itself carries no raw control character (C1 and bidi escaped as \uXXXX).
    expect(h.stdout).not.toMatch(RAW)
  })

  it("history and plan list neutralise names and keep one line per entry", async () => {
    const h = await concord(dir, ["history", id])
    expect(h.code).toBe(0)
    expect(h.stdout).not.toMatch(RAW)
    expect(h.stdout).toContain("plan\\x1b]0;title\\x07\\u202e")
    const l = await concord(dir, ["plan", "list"])
    expect(l.stdout).not.toMatch(RAW)
    expect(l.stdout.trim().split("\n")).toHaveLength(2)
  })

  it("error messages naming untrusted input are neutralised", async () => {
    const r = await concord(dir, ["status", "no\x1b[2Jsuch\u202eplan"])
    expect(r.code).not.toBe(0)
    expect(r.stderr).not.toMatch(RAW)
    expect(r.stderr).toContain("no\\x1b[2Jsuch\\u202eplan")
  })

  it("run's event log and final status neutralise a failing job's message", async () => {
    const d = tempDir()
    try {
      const agent = path.join(d, "evil.sh")
      writeFileSync(agent, `#!/bin/sh\nconcord report failed "$(printf '%s' "$EVIL")"\nexit 3\n`)
      chmodSync(agent, 0o755)
      const pid = await createPlan(d, `name: evil-run\njobs:\n  - name: x\n    run: ./evil.sh\n    env: { EVIL: ${yamlString(EVIL)} }\n`)
      const r = await concord(d, ["run", pid], { env: plainEnv })
      expect(r.code).toBe(3)
      expect(r.stdout).not.toMatch(RAW)
      expect(r.stderr).not.toMatch(RAW)
      // The event line "plan paused at on_error: job x (<message>)" carries the message, made visible.
      expect(r.stdout).toMatch(/paused at on_error: job x \(A\\x1b\[2J\\x1b\]0;owned\\x07/)
      expect((await statusJson(d, pid)).checkpointContext.message).toBe(EVIL)
    } finally {
      cleanup(d)
    }
  }, 240_000) // a whole `concord run` on a loaded 2-core machine

  it("an error message sent by a server is neutralised", async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(403, { "content-type": "text/plain" })
      res.end(`nope ${EVIL}`)
    })
    await new Promise<void>(r => server.listen(0, "127.0.0.1", r))
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const r = await concord(dir, ["status", "--remote", url, "--token", "t"], { env: plainEnv })
      expect(r.code).toBe(1)
      expect(r.stderr).not.toMatch(RAW)
      expect(r.stderr).toContain("nope A\\x1b[2J\\x1b]0;owned\\x07")
      expect(r.stderr.trim().split("\n")).toHaveLength(1)
    } finally {
      server.close()
    }
  })
})
