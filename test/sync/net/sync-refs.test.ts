/**
 * `concord sync --plan REF` resolves its references by the one rule of src/ops/resolve.ts (id, url, name,
 * unique prefix; an ambiguous name or prefix is refused naming the plans), first among the plans the
 * token can see on the server, then in the local store. Real server process, real CLI processes.
 */
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { addTokenCli, createPlanCli, FOUNDING_PLAN, ok, rm, runConcord, type ServerProcess, startServerProcess, tempRoot } from "./helpers.js"

const named = (name: string) => FOUNDING_PLAN.replace("founding-bug", name)

let root: string
let server: ServerProcess
let admin: string
let twins: string[]
let solo: string

beforeAll(async () => {
  root = tempRoot()
  const s = path.join(root, "server")
  twins = [await createPlanCli(s, named("twin"), "t1.yaml"), await createPlanCli(s, named("twin"), "t2.yaml")]
  solo = await createPlanCli(s, named("solo"), "solo.yaml")
  admin = await addTokenCli(s, "*", "admin")
  server = await startServerProcess(s)
}, 60_000)

afterAll(async () => {
  await server?.stop("SIGTERM")
  rm(root)
})

describe("sync --plan REF", () => {
  it("an ambiguous name on the server is refused, naming both plans, and nothing is synced", async () => {
    const m = path.join(root, "m1")
    const r = await runConcord(m, ["sync", server.url, "--token", admin, "--plan", "twin"])
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toMatch(/2 plans are named "twin"/)
    for (const id of twins) expect(r.stderr).toContain(id)
    expect((await runConcord(m, ["plan", "list", "--json"])).stdout).not.toContain(twins[0])
  })

  it("a name and a unique id prefix on the server are found; the plan arrives in the local store", async () => {
    const byName = path.join(root, "m2")
    await ok(byName, ["sync", server.url, "--token", admin, "--plan", "solo", "--quiet"])
    expect(JSON.parse((await ok(byName, ["status", solo, "--json"])).stdout).name).toBe("solo")
    const byPrefix = path.join(root, "m3")
    await ok(byPrefix, ["sync", server.url, "--token", admin, "--plan", solo.slice(0, 10), "--quiet"])
    expect(JSON.parse((await ok(byPrefix, ["status", solo, "--json"])).stdout).name).toBe("solo")
  })

  it("a local plan is found by name and pushed; an ambiguous local name is refused, naming both", async () => {
    const m = path.join(root, "m4")
    const mine = await createPlanCli(m, named("mine"), "mine.yaml")
    await ok(m, ["sync", server.url, "--token", admin, "--plan", "mine", "--quiet"])
    const other = path.join(root, "m5")
    await ok(other, ["sync", server.url, "--token", admin, "--plan", mine, "--quiet"])
    expect(JSON.parse((await ok(other, ["status", mine, "--json"])).stdout).name).toBe("mine")

    const local = [await createPlanCli(m, named("dup"), "d1.yaml"), await createPlanCli(m, named("dup"), "d2.yaml")]
    const r = await runConcord(m, ["sync", server.url, "--token", admin, "--plan", "dup"])
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toMatch(/2 plans are named "dup"/)
    for (const id of local) expect(r.stderr).toContain(id)
  })

  it("a reference found nowhere says so", async () => {
    const r = await runConcord(path.join(root, "m6"), ["sync", server.url, "--token", admin, "--plan", "nowhere"])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/no plan "nowhere" in this store or among the plans this token can see on the server/)
  })
})
