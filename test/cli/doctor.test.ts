/**
 * `concord doctor` and the quarantine warning of `status`, with the real binary on a real store:
 * quarantined chunks that are valid are restored (by doctor --fix, and automatically by any read of
 * their document), damaged ones are reported, nothing is printed with raw control characters.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, unlinkSync, utimesSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { reportDocId } from "../../src/doc/ids.js"
import { readReports } from "../../src/doc/reports.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { cleanup, concord, createPlan, tempDir } from "../helpers/cli.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))
const PLAN = `name: doc\njobs:\n  - { name: A, run: "true" }\n  - { name: B, run: "true" }\n`
const docDir = (store: string, id: string) => path.join(store, id.slice(0, 2), id.slice(2))

async function setup() {
  const store = tempDir("concord-doctor-")
  dirs.push(store)
  const id = await createPlan(store, PLAN)
  for (let i = 0; i < 3; i++) expect((await concord(store, ["report", "progress", `m${i}`, "--job", "B", "--plan", id])).code).toBe(0)
  return { store, id, inc: path.join(docDir(store, reportDocId(id, "B")), "incremental"), q: path.join(store, "quarantine") }
}

/** Move a valid chunk of report log B into quarantine, as a watcher that judged it too early would have. */
function quarantineValid(id: string, inc: string, q: string): string {
  const type = existsSync(inc) && readdirSync(inc).length > 0 ? "incremental" : "snapshot"
  const dir = path.join(path.dirname(inc), type)
  const name = readdirSync(dir).sort()[0]
  mkdirSync(q, { recursive: true })
  const qname = `${reportDocId(id, "B")}__${type}__${name}.${Date.now()}`
  copyFileSync(path.join(dir, name), path.join(q, qname))
  unlinkSync(path.join(dir, name))
  return qname
}

describe("concord doctor", () => {
  it("lists quarantined files, restores the valid ones with --fix, reports the damaged ones; status warns in one line", async () => {
    const { store, id, inc, q } = await setup()
    const valid = quarantineValid(id, inc, q)
    const garbage = `${reportDocId(id, "B")}__incremental__${"f".repeat(64)}.${Date.now()}`
    writeFileSync(path.join(q, garbage), "not automerge \x1b[31m")
    writeFileSync(path.join(q, "weird\x1b[2Jname"), "x")

    const look = await concord(store, ["doctor"])
    expect(look.code).toBe(1)
    expect(look.stdout).toMatch(/quarantine: 3 files/)
    expect(look.stdout).toMatch(new RegExp(`valid +.*${valid}.*--fix`))
    expect(look.stdout).toMatch(/damaged +.*bad magic/)
    expect(look.stdout).toMatch(/unknown +.*weird\\x1b\[2Jname/)
    expect(look.stdout).not.toMatch(/\x1b/)
    expect(existsSync(path.join(q, valid))).toBe(true) // without --fix nothing moves

    const fix = await concord(store, ["doctor", "--fix", "--json"])
    expect(fix.code).toBe(1) // damaged files remain
    const r = JSON.parse(fix.stdout)
    expect(r.quarantine.find((e: any) => e.file.endsWith(valid)).outcome).toBe("restored")
    expect(r.quarantine.find((e: any) => e.file.endsWith(garbage)).outcome).toBe("damaged")
    expect(existsSync(path.join(q, valid))).toBe(false)
    const msgs = readReports(await new PlanStore(store).loadReports(id, "B")).map(x => x.message)
    expect(msgs).toEqual(expect.arrayContaining(["m0", "m1", "m2"]))

    // status says, in one line, that the store holds quarantined data
    const status = await concord(store, ["status", id, "--json"])
    expect(status.code, status.stderr).toBe(0)
    expect(status.stderr.split("\n").filter(l => /quarantined chunk files? in/.test(l))).toEqual([
      `concord: warning: 2 quarantined chunk files in ${q}; run "concord doctor" to restore the valid ones and list the rest`,
    ])

    // once the rest is dealt with, doctor is happy and status is quiet
    unlinkSync(path.join(q, garbage))
    unlinkSync(path.join(q, "weird\x1b[2Jname"))
    const clean = await concord(store, ["doctor"])
    expect(clean.code, clean.stdout).toBe(0)
    expect(clean.stdout).toMatch(/ok: nothing needs attention/)
    expect((await concord(store, ["status", id])).stderr).not.toMatch(/quarantined/)
  }, 60_000)

  it("any read of a document restores its valid quarantined chunks automatically", async () => {
    const { store, id, inc, q } = await setup()
    const valid = quarantineValid(id, inc, q)
    const h = await concord(store, ["history", id, "--json"])
    expect(h.code, h.stderr).toBe(0)
    expect(h.stderr).toMatch(/is valid now; restored it/)
    expect(readdirSync(q)).toEqual([])
    const [, type, file] = valid.replace(/\.\d+$/, "").split("__")
    expect(existsSync(path.join(path.dirname(inc), type, file))).toBe(true)
    const dids = JSON.parse(h.stdout)
      .filter((e: any) => e.doc === "reports:B")
      .map((e: any) => e.did)
    expect(dids.filter((d: string) => /progress/.test(d))).toHaveLength(3)
  }, 60_000)

  it("reports damaged chunks in place; --fix quarantines the old ones but never a document's only data", async () => {
    const { store, inc } = await setup()
    const bad = path.join(inc, "0".repeat(64))
    writeFileSync(bad, "garbage")
    const look = await concord(store, ["doctor", "--json"])
    expect(look.code).toBe(1)
    expect(JSON.parse(look.stdout).damaged).toMatchObject([{ file: bad, action: "left" }])
    // recent damage stays with --fix too (it may be a file being written)
    expect(JSON.parse((await concord(store, ["doctor", "--fix", "--json"])).stdout).damaged).toMatchObject([{ action: "left" }])
    const old = new Date(Date.now() - 120_000)
    utimesSync(bad, old, old)
    const fix = await concord(store, ["doctor", "--fix", "--json"])
    expect(JSON.parse(fix.stdout).damaged).toMatchObject([{ file: bad, action: "quarantined" }])
    expect(existsSync(bad)).toBe(false)

    // a document whose only chunk is damaged keeps it
    const lone = path.join(store, "zz", "zzzzzzzzzzzzzzzzzzzz", "snapshot", "abc")
    mkdirSync(path.dirname(lone), { recursive: true })
    writeFileSync(lone, "garbage")
    utimesSync(lone, old, old)
    const fix2 = JSON.parse((await concord(store, ["doctor", "--fix", "--json"])).stdout)
    expect(fix2.damaged).toMatchObject([{ file: lone, action: "left" }])
    expect(existsSync(lone)).toBe(true)
  }, 60_000)

  it("a missing store is a clear error", async () => {
    const dir = tempDir("concord-doctor-none-")
    dirs.push(dir)
    const r = await concord(dir, ["doctor", "--store", path.join(dir, "nope")])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^concord: no store at .*nope\n$/)
  })
})
