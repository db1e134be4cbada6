import { describe, expect, it } from "vitest"
import { findCycle, parsePlanSpec, SpecError, topoOrder, validatePlanSpec, type PlanSpec } from "../../src/doc/spec.js"

/** The issues of the SpecError that `fn` throws (fails the test if it throws anything else or nothing). */
function issuesOf(fn: () => unknown): string[] {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(SpecError)
    const e = err as SpecError
    expect(e.name).toBe("SpecError")
    expect(e.message).toBe(e.issues.join("\n"))
    return e.issues
  }
  throw new Error("expected a SpecError, but nothing was thrown")
}

type Raw = Record<string, unknown> & { jobs: Record<string, unknown>[] }

/** A small valid plan as a plain value; each test breaks one thing. */
function base(): Raw {
  return {
    name: "release",
    jobs: [
      { name: "db", run: "./db.sh" },
      { name: "api", run: "./api.sh", dependsOn: ["db"] },
    ],
  }
}

const FULL_YAML = `# release plan
name: release-1.2
mode: supervisor
maxParallel: 4
graceMs: 1000
staleMs: 60000
jobs:
  - name: db
    run: ./examples/db.sh
  - name: api
    run: ./examples/api.sh
    prompt: "Build the API"
    dependsOn: [db]
    env: { FOO: bar, PORT: "8080" }
    cwd: ./services/api
  - name: web.ui_v2-x
    run: npm test
    dependsOn:
      - api
      - db
`

const FULL_JSON = JSON.stringify(
  {
    name: "release-1.2",
    mode: "supervisor",
    maxParallel: 4,
    graceMs: 1000,
    staleMs: 60000,
    jobs: [
      { name: "db", run: "./examples/db.sh" },
      {
        name: "api",
        run: "./examples/api.sh",
        prompt: "Build the API",
        dependsOn: ["db"],
        env: { FOO: "bar", PORT: "8080" },
        cwd: "./services/api",
      },
      { name: "web.ui_v2-x", run: "npm test", dependsOn: ["api", "db"] },
    ],
  },
  null,
  2
)

const FULL_EXPECTED: PlanSpec = {
  name: "release-1.2",
  mode: "supervisor",
  maxParallel: 4,
  graceMs: 1000,
  staleMs: 60000,
  jobs: [
    { name: "db", run: "./examples/db.sh", dependsOn: [], env: {} },
    {
      name: "api",
      run: "./examples/api.sh",
      prompt: "Build the API",
      dependsOn: ["db"],
      env: { FOO: "bar", PORT: "8080" },
      cwd: "./services/api",
    },
    { name: "web.ui_v2-x", run: "npm test", dependsOn: ["api", "db"], env: {} },
  ],
}

describe("parsePlanSpec: acceptance", () => {
  it("accepts a full YAML spec", () => {
    expect(parsePlanSpec(FULL_YAML, "plan.yaml")).toStrictEqual(FULL_EXPECTED)
  })

  it("accepts the equivalent JSON spec", () => {
    expect(parsePlanSpec(FULL_JSON, "plan.json")).toStrictEqual(FULL_EXPECTED)
  })

  it("accepts tab-indented JSON", () => {
    const tabbed = JSON.stringify(JSON.parse(FULL_JSON), null, "\t")
    expect(parsePlanSpec(tabbed)).toStrictEqual(FULL_EXPECTED)
  })

  it("applies defaults (YAML and JSON alike)", () => {
    const expected: PlanSpec = {
      name: "minimal",
      mode: "autopilot",
      maxParallel: 3,
      graceMs: 5000,
      staleMs: 300000,
      jobs: [{ name: "only", run: "echo hi", dependsOn: [], env: {} }],
    }
    expect(parsePlanSpec("name: minimal\njobs:\n  - name: only\n    run: echo hi\n")).toStrictEqual(expected)
    expect(parsePlanSpec('{"name":"minimal","jobs":[{"name":"only","run":"echo hi"}]}')).toStrictEqual(expected)
  })

  it("accepts boundary values", () => {
    const v = { ...base(), maxParallel: 256, graceMs: 0, staleMs: 1000 }
    const spec = validatePlanSpec(v)
    expect([spec.maxParallel, spec.graceMs, spec.staleMs]).toEqual([256, 0, 1000])
    expect(validatePlanSpec({ ...base(), maxParallel: 1 }).maxParallel).toBe(1)
    expect(validatePlanSpec({ ...base(), name: "n".repeat(200) }).name).toHaveLength(200)
    const longName = "a".repeat(64)
    expect(validatePlanSpec({ name: "p", jobs: [{ name: longName, run: "x" }] }).jobs[0].name).toBe(longName)
  })

  it("keeps an env variable named __proto__ as plain data", () => {
    const spec = parsePlanSpec('{"name":"p","jobs":[{"name":"a","run":"x","env":{"__proto__":"v","A":"b"}}]}')
    const env = spec.jobs[0].env
    expect(Object.keys(env)).toEqual(["__proto__", "A"])
    expect(Object.getPrototypeOf(env)).toBe(Object.prototype)
  })

  it("does not alias the caller's arrays", () => {
    const v = base()
    const spec = validatePlanSpec(v)
    spec.jobs[1].dependsOn.push("x")
    expect(v.jobs[1].dependsOn).toEqual(["db"])
  })
})

describe("validatePlanSpec: rejection rules", () => {
  it("duplicate job names", () => {
    const v = base()
    v.jobs.push({ name: "db", run: "x" })
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([`job "db": duplicate name (also jobs[0])`])
  })

  it("unknown dependency", () => {
    const v = base()
    v.jobs[1].dependsOn = ["dbb"]
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([`job "api": dependsOn names unknown job "dbb"`])
  })

  it("cycle of 3, naming the cycle", () => {
    const v = {
      name: "p",
      jobs: [
        { name: "start", run: "x" },
        { name: "a", run: "x", dependsOn: ["start", "b"] },
        { name: "b", run: "x", dependsOn: ["c"] },
        { name: "c", run: "x", dependsOn: ["a"] },
      ],
    }
    expect(issuesOf(() => validatePlanSpec(v))).toEqual(["dependency cycle: a -> b -> c -> a"])
  })

  it("self-dependency", () => {
    const v = base()
    v.jobs[1].dependsOn = ["db", "api"]
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([`job "api": depends on itself`])
  })

  it("duplicate entries in one dependsOn list", () => {
    const v = base()
    v.jobs[1].dependsOn = ["db", "db", "db"]
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([`job "api": dependsOn lists "db" more than once`])
  })

  it("empty job list", () => {
    expect(issuesOf(() => validatePlanSpec({ name: "p", jobs: [] }))).toEqual([`plan: "jobs" must list at least one job`])
  })

  it("bad job name", () => {
    const v = base()
    v.jobs.push({ name: "x", run: "x" }, { name: "bad name!", run: "x" })
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([`job name "bad name!" (jobs[3]): must match [A-Za-z0-9._-]{1,64}`])
  })

  it.each([
    ["", `job name "" (jobs[0]): must match [A-Za-z0-9._-]{1,64}`],
    ["a".repeat(65), `job name "${"a".repeat(61)}..." (jobs[0]): must match [A-Za-z0-9._-]{1,64}`],
    ["a/b", `job name "a/b" (jobs[0]): must match [A-Za-z0-9._-]{1,64}`],
  ])("bad job name %j", (name, message) => {
    expect(issuesOf(() => validatePlanSpec({ name: "p", jobs: [{ name, run: "x" }] }))).toEqual([message])
  })

  it("unknown key at plan level, with a did-you-mean hint", () => {
    const v = { ...base(), maxparallel: 2, colour: "red" }
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([`plan: unknown key "maxparallel" (did you mean "maxParallel"?)`, `plan: unknown key "colour"`])
  })

  it("unknown key at job level, with a did-you-mean hint", () => {
    const v = base()
    v.jobs.push({ name: "x", run: "x" })
    v.jobs[2] = { name: "web", run: "x", dependson: ["db"], depends_on: ["db"], promt: "p", timeout: 5 }
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([
      `jobs[2] (name "web"): unknown key "dependson" (did you mean "dependsOn"?)`,
      `jobs[2] (name "web"): unknown key "depends_on" (did you mean "dependsOn"?)`,
      `jobs[2] (name "web"): unknown key "promt" (did you mean "prompt"?)`,
      `jobs[2] (name "web"): unknown key "timeout"`,
    ])
  })

  it("a key from the wrong level says where it belongs", () => {
    const v = base()
    ;(v as Record<string, unknown>).run = "x"
    v.jobs[0].maxParallel = 2
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([
      `plan: unknown key "run" ("run" belongs inside an entry of "jobs")`,
      `jobs[0] (name "db"): unknown key "maxParallel" ("maxParallel" is a plan-level field)`,
    ])
  })

  it("bad mode", () => {
    expect(issuesOf(() => validatePlanSpec({ ...base(), mode: "turbo" }))).toEqual([
      `plan: field "mode" must be one of autopilot, copilot, supervisor (got "turbo")`,
    ])
    expect(issuesOf(() => validatePlanSpec({ ...base(), mode: "Copilot" }))).toEqual([
      `plan: field "mode" must be one of autopilot, copilot, supervisor (got "Copilot"; did you mean "copilot"?)`,
    ])
  })

  it.each([
    [0, "0"],
    [257, "257"],
    [2.5, "2.5"],
    [-1, "-1"],
  ])("maxParallel out of range: %s", (maxParallel, shown) => {
    expect(issuesOf(() => validatePlanSpec({ ...base(), maxParallel }))).toEqual([`plan: field "maxParallel" must be an integer from 1 to 256 (got ${shown})`])
  })

  it("graceMs and staleMs out of range", () => {
    expect(issuesOf(() => validatePlanSpec({ ...base(), graceMs: -1, staleMs: 999 }))).toEqual([
      `plan: field "graceMs" must be an integer from 0 to 2147483647 (got -1)`,
      `plan: field "staleMs" must be an integer from 1000 to 2147483647 (got 999)`,
    ])
    expect(issuesOf(() => validatePlanSpec({ ...base(), staleMs: 2 ** 31 }))).toEqual([
      `plan: field "staleMs" must be an integer from 1000 to 2147483647 (got 2147483648)`,
    ])
  })

  it("env value that is not a string", () => {
    const v = base()
    v.jobs[0].env = { FOO: "ok", PORT: 8080 }
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([`jobs[0] (name "db"): field "env.PORT" must be a string (got number)`])
  })

  it("env variable name that is not valid", () => {
    const v = base()
    v.jobs[0].env = { "1FOO": "x" }
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([
      `jobs[0] (name "db"): field "env" has invalid variable name "1FOO" (must match [A-Za-z_][A-Za-z0-9_]*)`,
    ])
  })

  describe("wrong types, one per field", () => {
    const planCases: [string, unknown, string][] = [
      ["name", 42, `plan: field "name" must be a non-empty string of at most 200 characters (got number)`],
      ["name", "", `plan: field "name" must be a non-empty string of at most 200 characters (got "")`],
      ["name", "n".repeat(201), `plan: field "name" must be a non-empty string of at most 200 characters (got a string of 201 characters)`],
      ["mode", 1, `plan: field "mode" must be one of autopilot, copilot, supervisor (got number)`],
      ["maxParallel", "3", `plan: field "maxParallel" must be an integer from 1 to 256 (got string)`],
      ["graceMs", true, `plan: field "graceMs" must be an integer from 0 to 2147483647 (got boolean)`],
      ["staleMs", null, `plan: field "staleMs" must be an integer from 1000 to 2147483647 (got null)`],
      ["jobs", { db: { run: "x" } }, `plan: field "jobs" must be a non-empty list of jobs (got mapping)`],
    ]
    it.each(planCases)("plan field %s = %j", (field, value, message) => {
      expect(issuesOf(() => validatePlanSpec({ ...base(), [field]: value }))).toEqual([message])
    })

    const jobCases: [string, unknown, string][] = [
      ["name", 7, `jobs[0]: field "name" must be a string (got number)`],
      ["run", 5, `jobs[0] (name "db"): field "run" must be a non-empty string (got number)`],
      ["run", "", `jobs[0] (name "db"): field "run" must be a non-empty string (got "")`],
      ["prompt", ["a"], `jobs[0] (name "db"): field "prompt" must be a string (got list)`],
      ["dependsOn", "api", `jobs[0] (name "db"): field "dependsOn" must be a list of job names (got string)`],
      ["env", ["FOO=bar"], `jobs[0] (name "db"): field "env" must be a mapping of variable names to string values (got list)`],
      ["cwd", false, `jobs[0] (name "db"): field "cwd" must be a string (got boolean)`],
    ]
    it.each(jobCases)("job field %s = %j", (field, value, message) => {
      const v = base()
      v.jobs[0][field] = value
      expect(issuesOf(() => validatePlanSpec(v))).toEqual([message])
    })

    it("dependsOn entry that is not a string", () => {
      const v = base()
      v.jobs[1].dependsOn = ["db", 3]
      expect(issuesOf(() => validatePlanSpec(v))).toEqual([`jobs[1] (name "api"): field "dependsOn[1]" must be a job name string (got number)`])
    })

    it("a job that is not a mapping", () => {
      const v = base()
      ;(v.jobs as unknown[]).push("web")
      expect(issuesOf(() => validatePlanSpec(v))).toEqual([`jobs[2]: must be a mapping with "name" and "run" (got string)`])
    })

    it("missing required fields", () => {
      expect(issuesOf(() => validatePlanSpec({ jobs: [{ run: "x" }, { name: "b" }] }))).toEqual([
        `plan: missing required field "name"`,
        `jobs[0]: missing required field "name"`,
        `jobs[1] (name "b"): missing required field "run"`,
      ])
      expect(issuesOf(() => validatePlanSpec({ name: "p" }))).toEqual([`plan: missing required field "jobs"`])
    })

    it("YAML null for an optional field is a type error, not a default", () => {
      expect(issuesOf(() => parsePlanSpec("name: p\nmode:\njobs: [{name: a, run: x}]\n"))).toEqual([
        `plan: field "mode" must be one of autopilot, copilot, supervisor (got null)`,
      ])
    })
  })

  it("top-level value that is not a mapping", () => {
    expect(issuesOf(() => validatePlanSpec(["a"]))).toEqual([`plan: spec must be a mapping with "name" and "jobs" (got list)`])
    expect(issuesOf(() => parsePlanSpec("just text"))).toEqual([`plan: spec must be a mapping with "name" and "jobs" (got string)`])
    expect(issuesOf(() => parsePlanSpec(""))).toEqual([`plan: spec is empty (expected a mapping with "name" and "jobs")`])
    expect(issuesOf(() => parsePlanSpec("# only a comment\n"))).toEqual([`plan: spec is empty (expected a mapping with "name" and "jobs")`])
  })

  it("collects every issue instead of stopping at the first, and never leaks zod's wording", () => {
    const yaml = `name: release
mode: turbo
maxParallel: 0
jobs:
  - name: db
    run: 5
  - name: api
    run: ./api.sh
    dependson: [db]
    dependsOn: [dbb, api]
  - name: db
    run: x
`
    const issues = issuesOf(() => parsePlanSpec(yaml, "plan.yaml"))
    expect(issues).toEqual([
      `plan: field "mode" must be one of autopilot, copilot, supervisor (got "turbo")`,
      `plan: field "maxParallel" must be an integer from 1 to 256 (got 0)`,
      `jobs[0] (name "db"): field "run" must be a non-empty string (got number)`,
      `jobs[1] (name "api"): unknown key "dependson" (did you mean "dependsOn"?)`,
      `job "db": duplicate name (also jobs[0])`,
      `job "api": dependsOn names unknown job "dbb"`,
      `job "api": depends on itself`,
    ])
    for (const issue of issues) expect(issue).not.toMatch(/Invalid input|expected .* received|Unrecognized key|Too (small|big)/)
  })

  it("does not report a cycle while other problems exist", () => {
    const v = {
      name: "p",
      jobs: [
        { name: "a", run: "x", dependsOn: ["b"] },
        { name: "b", run: "x", dependsOn: ["a", "zzz"] },
      ],
    }
    expect(issuesOf(() => validatePlanSpec(v))).toEqual([`job "b": dependsOn names unknown job "zzz"`])
  })
})

describe("parsePlanSpec: YAML errors", () => {
  it("syntax error names the file, line and column", () => {
    const yaml = "name: release\njobs:\n  - name: a\n    run: x\n  - name: b\n     run: y\n"
    const issues = issuesOf(() => parsePlanSpec(yaml, "plan.yaml"))
    expect(issues.length).toBeGreaterThan(0)
    expect(issues[0]).toMatch(/^plan\.yaml:5:11: YAML syntax error: \S/)
  })

  it("duplicate mapping key is reported with its line", () => {
    expect(issuesOf(() => parsePlanSpec("name: a\njobs: []\nname: b\n", "p.yml"))).toEqual(["p.yml:3:1: YAML syntax error: Map keys must be unique"])
  })

  it("JSON syntax error points at the line", () => {
    const json = '{\n  "name": "p",\n  "jobs": [\n    {"name": "a" "run": "x"}\n  ]\n}'
    expect(issuesOf(() => parsePlanSpec(json, "plan.json"))[0]).toMatch(/^plan\.json:4:\d+: YAML syntax error: /)
  })

  it("without a file name, uses <input>", () => {
    expect(issuesOf(() => parsePlanSpec('name: "unclosed\n'))[0]).toMatch(/^<input>:\d+:\d+: YAML syntax error: /)
  })

  it("unresolved alias names its position", () => {
    expect(issuesOf(() => parsePlanSpec("name: p\njobs: *nope\n", "p.yaml"))).toEqual([
      "p.yaml:2:7: YAML error: Unresolved alias (the anchor must be set before the alias): nope",
    ])
  })
})

describe("findCycle", () => {
  const j = (name: string, ...dependsOn: string[]) => ({ name, dependsOn })

  it("returns undefined for an acyclic graph", () => {
    expect(findCycle([j("a"), j("b", "a"), j("c", "a", "b")])).toBeUndefined()
    expect(findCycle([])).toBeUndefined()
  })

  it("returns the closed path of a 3-cycle in dependency direction", () => {
    expect(findCycle([j("a", "b"), j("b", "c"), j("c", "a")])).toEqual(["a", "b", "c", "a"])
  })

  it("starts the path where the cycle is entered", () => {
    expect(findCycle([j("root", "x"), j("x", "y"), j("y", "z"), j("z", "x")])).toEqual(["x", "y", "z", "x"])
  })

  it("finds a self-loop and a 2-cycle", () => {
    expect(findCycle([j("a", "a")])).toEqual(["a", "a"])
    expect(findCycle([j("a", "b"), j("b", "a")])).toEqual(["a", "b", "a"])
  })

  it("ignores unknown dependency names", () => {
    expect(findCycle([j("a", "ghost")])).toBeUndefined()
  })

  it("handles long chains without recursion", () => {
    const n = 50_000
    const jobs = Array.from({ length: n }, (_, i) => j(`j${i}`, ...(i + 1 < n ? [`j${i + 1}`] : ["j0"])))
    const cycle = findCycle(jobs)
    expect(cycle?.length).toBe(n + 1)
    expect(cycle?.[0]).toBe("j0")
  })
})

describe("topoOrder", () => {
  const j = (name: string, ...dependsOn: string[]) => ({ name, dependsOn })

  it("keeps spec order when there are no dependencies", () => {
    expect(topoOrder([j("c"), j("a"), j("b")])).toEqual(["c", "a", "b"])
  })

  it("puts dependencies first, spec order among ready jobs", () => {
    expect(topoOrder([j("c", "a"), j("b"), j("a")])).toEqual(["b", "a", "c"])
    expect(topoOrder([j("web", "api"), j("api", "db"), j("docs"), j("db")])).toEqual(["docs", "db", "api", "web"])
  })

  it("a job released later but listed earlier goes before ready jobs listed after it", () => {
    // After "a" runs, both "b" (index 0) and "z" (index 2) are ready; spec order puts b first.
    expect(topoOrder([j("b", "a"), j("a"), j("z")])).toEqual(["a", "b", "z"])
  })

  it("diamond", () => {
    expect(topoOrder([j("top", "left", "right"), j("right", "base"), j("left", "base"), j("base")])).toEqual(["base", "right", "left", "top"])
  })

  it("tolerates a repeated dependency entry", () => {
    expect(topoOrder([j("b", "a", "a"), j("a")])).toEqual(["a", "b"])
  })

  it("throws SpecError naming the cycle", () => {
    expect(issuesOf(() => topoOrder([j("x"), j("a", "c"), j("b", "a"), j("c", "b")]))).toEqual(["dependency cycle: a -> c -> b -> a"])
  })

  it("throws SpecError on unknown dependencies and duplicate names", () => {
    expect(issuesOf(() => topoOrder([j("a", "nope"), j("a")]))).toEqual([
      `job "a": duplicate name (also jobs[0])`,
      `job "a": dependsOn names unknown job "nope"`,
    ])
  })

  it("orders a validated spec", () => {
    expect(topoOrder(parsePlanSpec(FULL_YAML).jobs)).toEqual(["db", "api", "web.ui_v2-x"])
  })
})

describe("git plan fields", () => {
  const gitBase = () => ({ ...base(), repo: "." })
  it("a plan without repo has no git part, exactly as before", () => {
    expect(validatePlanSpec(base()).git).toBeUndefined()
    expect("git" in validatePlanSpec(base())).toBe(false)
  })
  it("defaults: integration branch concord/<plan name as a branch component>, base branch resolved at the first run, no test, no draft", () => {
    const s = validatePlanSpec({ ...gitBase(), name: "Release 1.2: the big one!" })
    expect(s.git).toEqual({ repo: ".", baseBranch: null, integrationBranch: "concord/Release-1.2-the-big-one", test: null, pr: { draft: false } })
  })
  it("keeps every field given", () => {
    const s = validatePlanSpec({
      ...gitBase(),
      baseBranch: "develop",
      integrationBranch: "int/rel",
      test: "npm test",
      pr: { title: "Release", body: "Body", draft: true },
      jobs: [{ name: "db", run: "x", touchSet: ["db/**"], setup: { copyFiles: [".env"], symlinkDirs: ["node_modules"], commands: ["npm ci"] } }],
    })
    expect(s.git).toEqual({
      repo: ".",
      baseBranch: "develop",
      integrationBranch: "int/rel",
      test: "npm test",
      pr: { title: "Release", body: "Body", draft: true },
    })
    expect(s.jobs[0]).toMatchObject({ touchSet: ["db/**"], setup: { copyFiles: [".env"], symlinkDirs: ["node_modules"], commands: ["npm ci"] } })
    expect(validatePlanSpec({ ...gitBase(), jobs: [{ name: "a", run: "x", setup: { commands: ["make"] } }] }).jobs[0].setup).toEqual({
      copyFiles: [],
      symlinkDirs: [],
      commands: ["make"],
    })
  })
  it("git fields without repo are refused, naming the field", () => {
    const issues = issuesOf(() => validatePlanSpec({ ...base(), test: "npm test", jobs: [{ name: "a", run: "x", touchSet: ["src/**"] }] }))
    expect(issues).toEqual([
      `plan: field "test" needs "repo" (the git repository the jobs work in)`,
      `jobs[0] (name "a"): field "touchSet" needs a plan-level "repo"`,
    ])
  })
  it("bad branch names, paths leaving the repository, wrong types and unknown nested keys each get their own message", () => {
    const issues = issuesOf(() =>
      validatePlanSpec({
        ...gitBase(),
        baseBranch: "my branch",
        integrationBranch: "a..b",
        pr: { titel: "x", draft: "yes" },
        jobs: [
          { name: "db", run: "x", touchSet: [], setup: { copyFiles: ["../secret"], comands: [] } },
          { name: "api", run: "y", touchSet: ["/etc/*", 3] },
        ],
      })
    )
    expect(issues).toEqual([
      `plan: field "pr.draft" must be true or false (got string)`,
      `plan: unknown key "titel" in "pr" (did you mean "title"?)`,
      `jobs[0] (name "db"): "touchSet" must list at least one glob (leave it out to allow any file)`,
      `jobs[0] (name "db"): unknown key "comands" in "setup" (did you mean "commands"?)`,
      `jobs[1] (name "api"): field "touchSet[1]" must be a non-empty glob string (got number)`,
      `plan: field "baseBranch" is not a valid branch name: "my branch" contains a space, a control character or one of ~ ^ : ? * [ \\`,
      `plan: field "integrationBranch" is not a valid branch name: "a..b" contains ".."`,
      `jobs[0] (name "db"): setup.copyFiles[0] "../secret" must stay inside the repository (no "..")`,
      `jobs[1] (name "api"): touchSet[0] "/etc/*" must be relative to the repository root`,
    ])
  })
  it("refuses a job name that cannot be part of a branch, and an integration branch equal to the base", () => {
    expect(issuesOf(() => validatePlanSpec({ ...gitBase(), jobs: [{ name: "x.lock", run: "x" }] }))).toEqual([
      `jobs[0] (name "x.lock"): the job's branch "concord/release--x.lock" would not be a valid branch name: it has a component ending with ".lock" ("release--x.lock")`,
    ])
    expect(issuesOf(() => validatePlanSpec({ ...gitBase(), baseBranch: "main", integrationBranch: "main" }))).toEqual([
      `plan: "integrationBranch" and "baseBranch" are both "main": the merge queue needs a branch of its own`,
    ])
  })
  it("reads git fields from YAML", () => {
    const s = parsePlanSpec("name: r\nrepo: ../app\ntest: npm test\npr: { draft: true }\njobs:\n  - name: a\n    run: x\n    touchSet: [src/**]\n")
    expect(s.git).toMatchObject({ repo: "../app", test: "npm test", pr: { draft: true } })
    expect(s.jobs[0].touchSet).toEqual(["src/**"])
  })
})
