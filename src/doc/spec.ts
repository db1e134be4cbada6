/**
 * Plan spec: the YAML (or JSON) file a user writes to describe a plan and its jobs.
 *
 * Pure: no I/O, no timers. The CLI reads the file and hands the text to `parsePlanSpec`.
 *
 * Validation runs in two passes. A zod schema with strict objects checks structure and types; its issues
 * are translated into concord's own messages (zod's wording never reaches the user). Semantic checks
 * (duplicate names, unknown or repeated dependencies, self-dependencies) run on the raw value as far as it
 * can be read, so one run reports every problem it can. Cycle detection runs only when everything else
 * is valid, because a cycle over misspelled or duplicate names would be noise.
 *
 * Message formats (every message names where the problem is):
 *   plan: field "mode" must be one of autopilot, copilot, supervisor (got "turbo")
 *   plan: unknown key "maxparallel" (did you mean "maxParallel"?)
 *   jobs[0] (name "db"): field "run" must be a non-empty string (got number)
 *   jobs[2] (name "api"): unknown key "dependson" (did you mean "dependsOn"?)
 *   job name "bad name!" (jobs[3]): must match [A-Za-z0-9._-]{1,64}
 *   job "api": duplicate name (also jobs[0])
 *   job "api": dependsOn names unknown job "dbb"
 *   dependency cycle: a -> b -> c -> a
 */
import { isAlias, LineCounter, parseDocument, visit } from "yaml"
import { branchNameProblem, defaultIntegrationBranch, jobBranch } from "./branches.js"
import { z } from "zod"

export type PlanMode = "autopilot" | "copilot" | "supervisor"

export interface JobSetupSpec {
  /** Files copied from the repository's main checkout into the job's worktree (e.g. untracked .env). */
  copyFiles: string[]
  /** Directories symlinked from the main checkout into the worktree (e.g. node_modules). */
  symlinkDirs: string[]
  /** Shell commands run in the worktree, in order, before the job starts. */
  commands: string[]
}

export interface JobSpec {
  name: string
  run: string
  prompt?: string
  dependsOn: string[]
  env: Record<string, string>
  cwd?: string
  /** Git plans only: globs (repository-relative) of the files this job may change. */
  touchSet?: string[]
  /** Git plans only: how to prepare the job's worktree. */
  setup?: JobSetupSpec
}

export interface PrSpec {
  title?: string
  body?: string
  draft: boolean
}

/** The git part of a plan: present only when the spec has `repo:`. */
export interface GitSpec {
  /** Repository path, relative to the plan file's directory (or absolute). */
  repo: string
  /** Branch the work starts from and the PR targets; null = the repository's current branch at the first run. */
  baseBranch: string | null
  /** Branch the merge queue advances (default `concord/<plan-name>`). */
  integrationBranch: string
  /** Shell command run on every combined result before the integration branch moves to it. */
  test: string | null
  pr: PrSpec
}

export interface PlanSpec {
  name: string
  mode: PlanMode
  maxParallel: number
  graceMs: number
  staleMs: number
  jobs: JobSpec[]
  /** Jobs in git worktrees with a merge queue; absent for plans without `repo:`. */
  git?: GitSpec
}

/** A spec that cannot be used. `issues` holds one human-readable line per problem. */
export class SpecError extends Error {
  readonly issues: string[]
  /** CLI convention (see errors.ts): 2 = bad input. */
  readonly exitCode = 2
  constructor(issues: string[]) {
    const list = issues.length > 0 ? [...issues] : ["invalid plan spec"]
    super(list.join("\n"))
    this.name = "SpecError"
    this.issues = list
  }
}

const PLAN_MODES: readonly PlanMode[] = ["autopilot", "copilot", "supervisor"]
export const JOB_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/

const SPEC_DEFAULTS = {
  mode: "autopilot" as PlanMode,
  maxParallel: 3,
  graceMs: 5000,
  staleMs: 300_000,
} as const

/** Largest delay Node's timers honour; larger values fire after 1 ms, so the spec rejects them. */
const MAX_TIMER_MS = 2_147_483_647
const MAX_PLAN_NAME = 200

const PLAN_KEYS = ["name", "mode", "maxParallel", "graceMs", "staleMs", "jobs", "repo", "baseBranch", "integrationBranch", "test", "pr"] as const
const JOB_KEYS = ["name", "run", "prompt", "dependsOn", "env", "cwd", "touchSet", "setup"] as const
/** Plan keys that only mean something with `repo:`. */
const GIT_PLAN_KEYS = ["baseBranch", "integrationBranch", "test", "pr"] as const
const GIT_JOB_KEYS = ["touchSet", "setup"] as const
const PR_KEYS = ["title", "body", "draft"] as const
const SETUP_KEYS = ["copyFiles", "symlinkDirs", "commands"] as const

// ---------------------------------------------------------------------------------------------------
// Schema (structure and types only; the messages come from the tables below)

const jobSchema = z
  .object({
    name: z.string().regex(JOB_NAME_PATTERN),
    run: z.string().min(1),
    prompt: z.string().optional(),
    dependsOn: z.array(z.string()).default([]),
    env: z.record(z.string().regex(ENV_NAME_PATTERN), z.string()).default({}),
    cwd: z.string().optional(),
    touchSet: z.array(z.string().min(1)).min(1).optional(),
    setup: z
      .object({
        copyFiles: z.array(z.string().min(1)).default([]),
        symlinkDirs: z.array(z.string().min(1)).default([]),
        commands: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .optional(),
  })
  .strict()

const planSchema = z
  .object({
    name: z.string().min(1).max(MAX_PLAN_NAME),
    mode: z.enum(["autopilot", "copilot", "supervisor"]).default(SPEC_DEFAULTS.mode),
    maxParallel: z.number().int().min(1).max(256).default(SPEC_DEFAULTS.maxParallel),
    graceMs: z.number().int().min(0).max(MAX_TIMER_MS).default(SPEC_DEFAULTS.graceMs),
    staleMs: z.number().int().min(1000).max(MAX_TIMER_MS).default(SPEC_DEFAULTS.staleMs),
    jobs: z.array(jobSchema).min(1),
    repo: z.string().min(1).optional(),
    baseBranch: z.string().min(1).optional(),
    integrationBranch: z.string().min(1).optional(),
    test: z.string().min(1).optional(),
    pr: z
      .object({ title: z.string().min(1).optional(), body: z.string().optional(), draft: z.boolean().default(false) })
      .strict()
      .optional(),
  })
  .strict()

type Kind = "string" | "number" | "list" | "mapping" | "boolean"
interface FieldRule {
  kind: Kind
  expect: string
}

const PLAN_FIELDS: Record<string, FieldRule> = {
  name: { kind: "string", expect: `a non-empty string of at most ${MAX_PLAN_NAME} characters` },
  mode: { kind: "string", expect: `one of ${PLAN_MODES.join(", ")}` },
  maxParallel: { kind: "number", expect: "an integer from 1 to 256" },
  graceMs: { kind: "number", expect: `an integer from 0 to ${MAX_TIMER_MS}` },
  staleMs: { kind: "number", expect: `an integer from 1000 to ${MAX_TIMER_MS}` },
  jobs: { kind: "list", expect: "a non-empty list of jobs" },
  repo: { kind: "string", expect: "a non-empty path to a git repository" },
  baseBranch: { kind: "string", expect: "a non-empty branch name" },
  integrationBranch: { kind: "string", expect: "a non-empty branch name" },
  test: { kind: "string", expect: "a non-empty shell command" },
  pr: { kind: "mapping", expect: "a mapping with optional title, body, draft" },
}

/** Fields inside nested mappings, by "parent.field". */
const NESTED_FIELDS: Record<string, FieldRule> = {
  "pr.title": { kind: "string", expect: "a non-empty string" },
  "pr.body": { kind: "string", expect: "a string" },
  "pr.draft": { kind: "boolean", expect: "true or false" },
  "setup.copyFiles": { kind: "list", expect: "a list of repository-relative file paths" },
  "setup.symlinkDirs": { kind: "list", expect: "a list of repository-relative directory paths" },
  "setup.commands": { kind: "list", expect: "a list of non-empty shell commands" },
}

const JOB_FIELDS: Record<string, FieldRule> = {
  name: { kind: "string", expect: "a string" },
  run: { kind: "string", expect: "a non-empty string" },
  prompt: { kind: "string", expect: "a string" },
  dependsOn: { kind: "list", expect: "a list of job names" },
  env: { kind: "mapping", expect: "a mapping of variable names to string values" },
  cwd: { kind: "string", expect: "a string" },
  touchSet: { kind: "list", expect: "a non-empty list of globs (repository-relative paths)" },
  setup: { kind: "mapping", expect: "a mapping with optional copyFiles, symlinkDirs, commands" },
}

// ---------------------------------------------------------------------------------------------------
// Public API

/**
 * Parse YAML or JSON text (JSON is YAML) and validate it. A syntax error becomes a SpecError whose
 * issues read `<file>:<line>:<column>: YAML syntax error: ...`; `fileName` defaults to "<input>".
 */
export function parsePlanSpec(text: string, fileName?: string): PlanSpec {
  const file = fileName ?? "<input>"
  if (typeof text !== "string") throw new SpecError([`${file}: spec text must be a string (got ${typeName(text)})`])
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new SpecError(doc.errors.map(err => `${at(file, lineCounter, err.pos[0])}: YAML syntax error: ${err.message}`))
  }
  let value: unknown
  try {
    value = doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    // toJS throws on an unresolved alias or an alias bomb; point at the first alias that does not resolve.
    let where = file
    visit(doc, {
      Alias(_key, node) {
        if (isAlias(node) && node.resolve(doc) === undefined && node.range) {
          where = at(file, lineCounter, node.range[0])
          return visit.BREAK
        }
        return undefined
      },
    })
    throw new SpecError([`${where}: YAML error: ${err instanceof Error ? err.message : String(err)}`])
  }
  return validatePlanSpec(value)
}

/** Validate an already-parsed value and apply defaults. Throws SpecError listing every problem found. */
export function validatePlanSpec(value: unknown): PlanSpec {
  if (value === null || value === undefined) {
    throw new SpecError([`plan: spec is empty (expected a mapping with "name" and "jobs")`])
  }
  if (!isMapping(value)) {
    throw new SpecError([`plan: spec must be a mapping with "name" and "jobs" (got ${typeName(value)})`])
  }

  const result = planSchema.safeParse(value)
  const structural: { order: number; message: string }[] = []
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issue.path
      const order = path[0] === "jobs" && typeof path[1] === "number" ? path[1] : -1
      for (const message of describeIssue(issue, value)) structural.push({ order, message })
    }
    // Plan-level problems first, then jobs in order (zod lists unknown plan keys last).
    structural.sort((a, b) => a.order - b.order)
  }

  const rawJobs = Array.isArray(value.jobs) ? (value.jobs as unknown[]) : []
  const issues = dedupe([...structural.map(s => s.message), ...semanticIssues(rawJobs), ...gitIssues(value, rawJobs)])

  if (issues.length === 0 && result.success) {
    const cycle = findCycle(result.data.jobs)
    if (cycle) issues.push(cycleMessage(cycle))
  }
  if (issues.length > 0 || !result.success) throw new SpecError(issues)

  const data = result.data
  const spec: PlanSpec = {
    name: data.name,
    mode: data.mode,
    maxParallel: data.maxParallel,
    graceMs: data.graceMs,
    staleMs: data.staleMs,
    jobs: data.jobs.map((job, i) => {
      const out: JobSpec = {
        name: job.name,
        run: job.run,
        dependsOn: [...job.dependsOn],
        // Rebuilt from the raw mapping: zod's record drops a "__proto__" key; Object.fromEntries keeps it as data.
        env: envOf(rawJobs[i], job.env),
      }
      if (job.prompt !== undefined) out.prompt = job.prompt
      if (job.cwd !== undefined) out.cwd = job.cwd
      if (job.touchSet !== undefined) out.touchSet = [...job.touchSet]
      if (job.setup !== undefined) {
        out.setup = { copyFiles: [...job.setup.copyFiles], symlinkDirs: [...job.setup.symlinkDirs], commands: [...job.setup.commands] }
      }
      return out
    }),
  }
  if (data.repo !== undefined) {
    const pr: PrSpec = { draft: data.pr?.draft ?? false }
    if (data.pr?.title !== undefined) pr.title = data.pr.title
    if (data.pr?.body !== undefined) pr.body = data.pr.body
    spec.git = {
      repo: data.repo,
      baseBranch: data.baseBranch ?? null,
      integrationBranch: data.integrationBranch ?? defaultIntegrationBranch(data.name),
      test: data.test ?? null,
      pr,
    }
  }
  return spec
}

// ---------------------------------------------------------------------------------------------------
// Git plans

function relativePathProblem(p: string): string | undefined {
  if (p.startsWith("/") || /^[A-Za-z]:[\\/]/.test(p)) return "must be relative to the repository root"
  if (p.split(/[\\/]/).includes("..")) return 'must stay inside the repository (no "..")'
  if (/[\x00-\x1f\x7f]/.test(p)) return "contains a control character"
  return undefined
}

function gitIssues(plan: Record<string, unknown>, rawJobs: unknown[]): string[] {
  const issues: string[] = []
  const hasRepo = plan.repo !== undefined
  if (!hasRepo) {
    for (const k of GIT_PLAN_KEYS) {
      if (plan[k] !== undefined) issues.push(`plan: field ${quote(k)} needs "repo" (the git repository the jobs work in)`)
    }
    rawJobs.forEach((job, i) => {
      if (!isMapping(job)) return
      for (const k of GIT_JOB_KEYS) {
        if (job[k] !== undefined) issues.push(`${jobLabel(i, job)}: field ${quote(k)} needs a plan-level "repo"`)
      }
    })
    return issues
  }
  for (const k of ["baseBranch", "integrationBranch"] as const) {
    const v = plan[k]
    if (typeof v !== "string" || v === "") continue
    const problem = branchNameProblem(v)
    if (problem) issues.push(`plan: field ${quote(k)} is not a valid branch name: ${quote(v)} ${problem}`)
  }
  const integration =
    typeof plan.integrationBranch === "string" ? plan.integrationBranch : typeof plan.name === "string" ? defaultIntegrationBranch(plan.name) : undefined
  if (integration !== undefined && plan.baseBranch === integration) {
    issues.push(`plan: "integrationBranch" and "baseBranch" are both ${quote(integration)}: the merge queue needs a branch of its own`)
  }
  rawJobs.forEach((job, i) => {
    if (!isMapping(job)) return
    const where = jobLabel(i, job)
    if (typeof job.name === "string" && JOB_NAME_PATTERN.test(job.name) && integration !== undefined && !branchNameProblem(integration)) {
      const branch = jobBranch(integration, job.name, 1)
      const problem = branchNameProblem(branch)
      if (problem) issues.push(`${where}: the job's branch ${quote(branch)} would not be a valid branch name: it ${problem}`)
    }
    if (Array.isArray(job.touchSet)) {
      job.touchSet.forEach((g: unknown, k: number) => {
        if (typeof g !== "string" || g === "") return
        const problem = relativePathProblem(g)
        if (problem) issues.push(`${where}: touchSet[${k}] ${quote(g)} ${problem}`)
      })
    }
    if (isMapping(job.setup)) {
      for (const f of ["copyFiles", "symlinkDirs"] as const) {
        const list = job.setup[f]
        if (!Array.isArray(list)) continue
        list.forEach((p: unknown, k: number) => {
          if (typeof p !== "string" || p === "") return
          const problem = relativePathProblem(p)
          if (problem) issues.push(`${where}: setup.${f}[${k}] ${quote(p)} ${problem}`)
        })
      }
    }
  })
  return issues
}

/**
 * First dependency cycle, as a closed path in dependency direction (`["a","b","c","a"]` means a depends
 * on b, b on c, c on a); undefined when there is none. Deterministic: roots are tried in spec order and
 * dependencies in list order. Dependencies on unknown names are ignored; a self-dependency is `["a","a"]`.
 */
export function findCycle(jobs: { name: string; dependsOn: string[] }[]): string[] | undefined {
  const index = firstIndexByName(jobs)
  const state = new Uint8Array(jobs.length) // 0 = unvisited, 1 = on the stack, 2 = done
  for (let root = 0; root < jobs.length; root++) {
    if (state[root] !== 0 || index.get(jobs[root].name) !== root) continue
    // Iterative DFS so a long dependency chain cannot overflow the call stack.
    const stack: { node: number; next: number }[] = [{ node: root, next: 0 }]
    state[root] = 1
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]
      const deps = jobs[frame.node].dependsOn
      if (frame.next >= deps.length) {
        state[frame.node] = 2
        stack.pop()
        continue
      }
      const target = index.get(deps[frame.next++])
      if (target === undefined || state[target] === 2) continue
      if (state[target] === 1) {
        const from = stack.findIndex(f => f.node === target)
        return [...stack.slice(from).map(f => jobs[f.node].name), jobs[target].name]
      }
      state[target] = 1
      stack.push({ node: target, next: 0 })
    }
  }
  return undefined
}

/**
 * Job names in an order that runs every dependency before its dependents. Stable: whenever several jobs
 * are ready, the one listed first in the spec comes first. Throws SpecError on a duplicate name, an
 * unknown dependency or a cycle.
 */
export function topoOrder(jobs: { name: string; dependsOn: string[] }[]): string[] {
  const index = firstIndexByName(jobs)
  const problems: string[] = []
  jobs.forEach((job, i) => {
    if (index.get(job.name) !== i) problems.push(`job ${quote(job.name)}: duplicate name (also jobs[${index.get(job.name)}])`)
  })
  const waitingOn = new Array<number>(jobs.length).fill(0)
  const dependents: number[][] = jobs.map(() => [])
  jobs.forEach((job, i) => {
    for (const dep of new Set(job.dependsOn)) {
      const target = index.get(dep)
      if (target === undefined) {
        problems.push(`job ${quote(job.name)}: dependsOn names unknown job ${quote(dep)}`)
        continue
      }
      waitingOn[i]++
      dependents[target].push(i)
    }
  })
  if (problems.length > 0) throw new SpecError(problems)

  const ready = new MinHeap()
  waitingOn.forEach((count, i) => {
    if (count === 0) ready.push(i)
  })
  const order: string[] = []
  while (ready.size > 0) {
    const i = ready.pop()
    order.push(jobs[i].name)
    for (const d of dependents[i]) if (--waitingOn[d] === 0) ready.push(d)
  }
  if (order.length < jobs.length) {
    const cycle = findCycle(jobs)
    throw new SpecError([cycle ? cycleMessage(cycle) : "dependency cycle"])
  }
  return order
}

// ---------------------------------------------------------------------------------------------------
// Issue translation

type ZodIssue = z.ZodError["issues"][number]

function describeIssue(issue: ZodIssue, root: Record<string, unknown>): string[] {
  const path = issue.path
  const isJob = path[0] === "jobs" && typeof path[1] === "number"
  const jobIndex = isJob ? (path[1] as number) : -1
  const rawJobs = Array.isArray(root.jobs) ? (root.jobs as unknown[]) : []
  const owner: unknown = isJob ? rawJobs[jobIndex] : root
  const where = isJob ? jobLabel(jobIndex, owner) : "plan"
  const rest = isJob ? path.slice(2) : path

  if (issue.code === "unrecognized_keys") {
    const parent = rest.length === 1 && (rest[0] === "pr" || rest[0] === "setup") ? rest[0] : undefined
    if (parent) {
      const known: readonly string[] = parent === "pr" ? PR_KEYS : SETUP_KEYS
      return issue.keys.map(key => {
        const guess = suggest(key, known)
        return `${where}: unknown key ${quote(key)} in ${quote(parent)} (${guess ? `did you mean ${quote(guess)}?` : `known: ${known.join(", ")}`})`
      })
    }
    return issue.keys.map(key => `${where}: unknown key ${quote(key)}${unknownKeyHint(key, isJob)}`)
  }

  // Nested git fields: pr.title, setup.commands, setup.commands[0], touchSet[1].
  if (isMapping(owner) && (rest[0] === "pr" || rest[0] === "setup" || rest[0] === "touchSet") && rest.length >= 2) {
    const parent = rest[0]
    if (parent === "touchSet" && typeof rest[1] === "number" && Array.isArray(owner.touchSet)) {
      return [`${where}: field "touchSet[${rest[1]}]" must be a non-empty glob string (got ${describeValue(owner.touchSet[rest[1]], "string")})`]
    }
    const box = owner[parent]
    const field = String(rest[1])
    const rule = NESTED_FIELDS[`${parent}.${field}`]
    if (rule && isMapping(box)) {
      const raw = box[field]
      if (rest.length === 3 && typeof rest[2] === "number" && Array.isArray(raw)) {
        return [`${where}: field ${quote(`${parent}.${field}[${rest[2]}]`)} must be a non-empty string (got ${describeValue(raw[rest[2]], "string")})`]
      }
      return [`${where}: field ${quote(`${parent}.${field}`)} must be ${rule.expect} (got ${describeValue(raw, rule.kind)})`]
    }
  }

  if (issue.code === "invalid_key" && isJob && rest[0] === "env") {
    return [`${where}: field "env" has invalid variable name ${quote(String(rest[1]))} (must match [A-Za-z_][A-Za-z0-9_]*)`]
  }

  if (isJob && rest.length === 0) {
    return [`${where}: must be a mapping with "name" and "run" (got ${typeName(owner)})`]
  }

  if (rest.length === 1 && typeof rest[0] === "string" && isMapping(owner)) {
    const field = rest[0]
    const rule = (isJob ? JOB_FIELDS : PLAN_FIELDS)[field]
    if (rule) {
      const raw = owner[field]
      if (!Object.hasOwn(owner, field) || raw === undefined) {
        return [`${where}: missing required field ${quote(field)}`]
      }
      if (!isJob && field === "jobs" && Array.isArray(raw) && raw.length === 0) {
        return [`plan: "jobs" must list at least one job`]
      }
      if (isJob && field === "touchSet" && Array.isArray(raw) && raw.length === 0) {
        return [`${where}: "touchSet" must list at least one glob (leave it out to allow any file)`]
      }
      if (isJob && field === "name" && typeof raw === "string") {
        return [`job name ${quote(raw)} (jobs[${jobIndex}]): must match [A-Za-z0-9._-]{1,64}`]
      }
      let got = describeValue(raw, rule.kind)
      if (!isJob && field === "mode" && typeof raw === "string") {
        const guess = suggest(raw, PLAN_MODES)
        if (guess) got += `; did you mean ${quote(guess)}?`
      }
      return [`${where}: field ${quote(field)} must be ${rule.expect} (got ${got})`]
    }
  }

  if (isJob && isMapping(owner) && rest.length === 2) {
    const [field, key] = rest
    if (field === "dependsOn" && typeof key === "number" && Array.isArray(owner.dependsOn)) {
      return [`${where}: field "dependsOn[${key}]" must be a job name string (got ${describeValue(owner.dependsOn[key], "string")})`]
    }
    if (field === "env" && typeof key === "string" && isMapping(owner.env)) {
      const shown = ENV_NAME_PATTERN.test(key) ? `env.${key}` : `env[${JSON.stringify(key)}]`
      return [`${where}: field ${quote(shown)} must be a string (got ${describeValue(owner.env[key], "string")})`]
    }
  }

  // Not expected with the schema above; still keep zod's wording out of the message.
  return [`${where}: field ${quote(formatPath(rest))} is invalid`]
}

function semanticIssues(rawJobs: unknown[]): string[] {
  const issues: string[] = []
  const firstIndex = new Map<string, number>()
  rawJobs.forEach((job, i) => {
    if (!isMapping(job) || typeof job.name !== "string") return
    const first = firstIndex.get(job.name)
    if (first === undefined) firstIndex.set(job.name, i)
    else issues.push(`job ${quote(job.name)}: duplicate name (also jobs[${first}])`)
  })
  // A job without a usable name may be the one a dependency meant; don't pile "unknown job" on top.
  const allNamed = rawJobs.every(job => isMapping(job) && typeof job.name === "string")
  rawJobs.forEach((job, i) => {
    if (!isMapping(job) || !Array.isArray(job.dependsOn)) return
    const name = typeof job.name === "string" ? job.name : undefined
    const label = name !== undefined ? `job ${quote(name)}` : `jobs[${i}]`
    const seen = new Set<string>()
    const repeated = new Set<string>()
    for (const dep of job.dependsOn as unknown[]) {
      if (typeof dep !== "string") continue // reported as a type error
      if (seen.has(dep)) {
        if (!repeated.has(dep)) issues.push(`${label}: dependsOn lists ${quote(dep)} more than once`)
        repeated.add(dep)
        continue
      }
      seen.add(dep)
      if (dep === name) issues.push(`${label}: depends on itself`)
      else if (allNamed && !firstIndex.has(dep)) issues.push(`${label}: dependsOn names unknown job ${quote(dep)}`)
    }
  })
  return issues
}

function cycleMessage(cycle: string[]): string {
  return `dependency cycle: ${cycle.join(" -> ")}`
}

function unknownKeyHint(key: string, isJob: boolean): string {
  const known: readonly string[] = isJob ? JOB_KEYS : PLAN_KEYS
  const guess = suggest(key, known)
  if (guess) return ` (did you mean ${quote(guess)}?)`
  const other: readonly string[] = isJob ? PLAN_KEYS : JOB_KEYS
  if (other.includes(key)) {
    return isJob ? ` (${quote(key)} is a plan-level field)` : ` (${quote(key)} belongs inside an entry of "jobs")`
  }
  return ""
}

/**
 * Closest known word: same apart from case, "_" or "-"; otherwise at most two edits away (insert,
 * delete, substitute, swap adjacent) and fewer edits than the word is long.
 */
function suggest(word: string, known: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[_-]/g, "")
  const same = known.find(k => norm(k) === norm(word))
  if (same !== undefined) return same
  let best: string | undefined
  let bestDistance = 3
  for (const k of known) {
    const d = editDistance(word, k)
    if (d < bestDistance && d < word.length) {
      best = k
      bestDistance = d
    }
  }
  return best
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3 // only distances <= 2 matter here
  const d: number[][] = []
  for (let i = 0; i <= a.length; i++) {
    d.push(new Array<number>(b.length + 1).fill(0))
    d[i][0] = i
  }
  for (let j = 0; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
      }
    }
  }
  return d[a.length][b.length]
}

// ---------------------------------------------------------------------------------------------------
// Small helpers

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v)
}

function typeName(v: unknown): string {
  if (v === null) return "null"
  if (Array.isArray(v)) return "list"
  if (typeof v === "object") return "mapping"
  return typeof v
}

/** The value itself when it has the expected type (so the user sees what is wrong), else its type. */
function describeValue(v: unknown, kind: Kind): string {
  if (kind === "string" && typeof v === "string") {
    return v.length > 60 ? `a string of ${v.length} characters` : JSON.stringify(v)
  }
  if (kind === "number" && typeof v === "number") return String(v)
  if (kind === "boolean" && typeof v === "boolean") return String(v)
  return typeName(v)
}

function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 61)}...` : s)
}

function jobLabel(i: number, job: unknown): string {
  return isMapping(job) && typeof job.name === "string" ? `jobs[${i}] (name ${quote(job.name)})` : `jobs[${i}]`
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = ""
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`
    else out += out === "" ? String(p) : `.${String(p)}`
  }
  return out || "(value)"
}

function at(file: string, lines: LineCounter, offset: number): string {
  const { line, col } = lines.linePos(offset)
  return `${file}:${line}:${col}`
}

function dedupe(items: string[]): string[] {
  return [...new Set(items)]
}

function envOf(rawJob: unknown, parsed: Record<string, string>): Record<string, string> {
  const raw = isMapping(rawJob) ? rawJob.env : undefined
  if (!isMapping(raw)) return { ...parsed }
  return Object.fromEntries(Object.entries(raw).filter((e): e is [string, string] => typeof e[1] === "string"))
}

function firstIndexByName(jobs: { name: string }[]): Map<string, number> {
  const index = new Map<string, number>()
  jobs.forEach((job, i) => {
    if (!index.has(job.name)) index.set(job.name, i)
  })
  return index
}

/** Min-heap of job indices: the ready job listed first in the spec comes out first. */
class MinHeap {
  private items: number[] = []
  get size(): number {
    return this.items.length
  }
  push(value: number): void {
    const a = this.items
    a.push(value)
    let i = a.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (a[parent] <= a[i]) break
      ;[a[parent], a[i]] = [a[i], a[parent]]
      i = parent
    }
  }
  pop(): number {
    const a = this.items
    const top = a[0]
    const last = a.pop() as number
    if (a.length > 0) {
      a[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < a.length && a[l] < a[m]) m = l
        if (r < a.length && a[r] < a[m]) m = r
        if (m === i) break
        ;[a[m], a[i]] = [a[i], a[m]]
        i = m
      }
    }
    return top
  }
}
