/**
 * concord's MCP server: one more thin front end over the plan operations (src/ops). Tools carry Mission
 * Control's names and parameters (`mc_report`, `mc_status`, `mc_plan`, ...), so prompts written for it keep
 * working. Every tool has a zod input schema, a description, an output schema, and returns a text
 * summary plus `structuredContent`. A refused operation throws; the SDK turns that into a tool error
 * (`isError`) whose text is the message the CLI prints, and nothing has been written.
 *
 * No plan rule lives here: statuses, transitions, approvals and the like are decided in src/ops and
 * src/doc. What this file decides is only who is calling (the job identity given on the command line)
 * and how results read.
 */
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { z } from "zod"
import { actorLabel, type WriteContext } from "../doc/actor.js"
import { InputError } from "../doc/errors.js"
import { JOB_STATUSES, REPORT_STATUSES } from "../doc/states.js"
import { validatePlanSpec } from "../doc/spec.js"
import type { JobSummary, PlanSummary } from "../doc/summary.js"
import { hostName } from "../lib/host.js"
import type { PlanBackend } from "../ops/backend.js"
import { approve } from "../ops/approve.js"
import { cancel, type ProcessStopper, unnamedCancelTarget } from "../ops/cancel.js"
import { cleanup, DEFAULT_DIFF_BYTES, diff, MAX_DIFF_BYTES, pullRequest, requestMerge, syncJob } from "../ops/git.js"
import { kill } from "../ops/kill.js"
import { DEFAULT_TAIL_LINES, MAX_TAIL_LINES, tailLog } from "../ops/logs.js"
import { createPlan, listPlans } from "../ops/plans.js"
import { reportRouted } from "../ops/endpoint.js"
import { status } from "../ops/status.js"
import { MCP_SERVER_NAME } from "./config.js"
import { clean, jobLine, planLines } from "./text.js"

/** The `run` a job created through mc_plan gets when it names none (see README, "Agents over MCP"). */
const DEFAULT_AGENT_COMMAND = `claude -p "$CONCORD_PROMPT" --mcp-config "$CONCORD_MCP_CONFIG" --allowedTools "mcp__${MCP_SERVER_NAME}"`

export interface McpServerOptions {
  /** The plan this server is for (default for every tool's `plan`); without it, the store's latest plan. */
  plan?: string
  /** The job this server speaks for: `mc_report` needs it. */
  job?: string
  /** The job's attempt (default: its current attempt). */
  attempt?: number
  /** `run` for mc_plan jobs that give none (default DEFAULT_AGENT_COMMAND). */
  agent?: string
  /** Relative job `cwd`s of mc_plan plans resolve against this directory. */
  baseDir: string
  /** Stops job processes on this machine (mc_kill, mc_plan_cancel). */
  stop?: ProcessStopper
  /** Actor label for changes not made as the job (default: the user at this machine). */
  user: string
  version: string
}

const planArg = z
  .string()
  .optional()
  .describe("Plan id, automerge: url, name or unique id prefix (default: the plan this server was started for, else the most recent plan)")

// Output schemas: the fields front ends rely on; objects may carry more.
const jobOut = z.looseObject({
  name: z.string(),
  status: z.enum(JOB_STATUSES),
  attempt: z.number(),
  dependsOn: z.array(z.string()),
  progress: z.number().nullable(),
  lastReport: z.object({ status: z.string(), message: z.string(), progress: z.number().nullable(), at: z.number(), by: z.string() }).nullable(),
  exitCode: z.number().nullable(),
  error: z.string().nullable(),
  log: z.string().nullable(),
  stale: z.boolean(),
})
const nextOut = z.array(z.object({ kind: z.string(), checkpoint: z.string(), job: z.string().optional() }))
const planOut = z.looseObject({
  id: z.string(),
  name: z.string(),
  mode: z.string(),
  status: z.string(),
  checkpoint: z.string().nullable(),
  checkpointContext: z.record(z.string(), z.unknown()).nullable(),
  orchestrator: z.string().nullable(),
  counts: z.record(z.string(), z.number()),
  jobs: z.array(jobOut),
  next: nextOut,
  warnings: z.array(z.string()),
})

function planStructured(s: PlanSummary, next: unknown[], warnings: string[]) {
  return {
    id: s.id,
    name: s.name,
    mode: s.mode,
    status: s.status,
    checkpoint: s.checkpoint,
    checkpointContext: s.checkpointContext,
    orchestrator: s.lease?.holder ?? null,
    counts: s.counts as Record<string, number>,
    jobs: s.jobs,
    next,
    warnings,
  }
}

const result = <T extends Record<string, unknown>>(text: string, structured: T) => ({
  content: [{ type: "text" as const, text: clean(text) }],
  structuredContent: structured,
})

export function createMcpServer(backend: PlanBackend, opts: McpServerOptions): McpServer {
  const server = new McpServer(
    { name: MCP_SERVER_NAME, version: opts.version },
    {
      instructions:
        "concord keeps the plan that coordinates several coding agents. A job's agent reports with mc_report " +
        "(working, progress with a percentage, blocked, needs_review, completed, failed) and reads the plan with mc_status / mc_plan_status. " +
        "A planning session creates plans with mc_plan, follows them with mc_overview, mc_plan_status, mc_jobs, mc_capture, " +
        "and controls them with mc_plan_approve, mc_plan_cancel, mc_kill. " +
        "Git plans (repo:) also have mc_diff (a job's changes), mc_sync (bring a job's worktree up to date with the integration branch), " +
        "mc_merge (ask for a completed job to be merged by the merge queue), mc_pr (the plan's pull request) and mc_cleanup (remove worktrees).",
    }
  )
  // A refusal's message may quote what the caller sent (a plan reference, a job name): the tool error's
  // text gets the same neutralising as every answer, so no raw control character reaches the client.
  const register = server.registerTool.bind(server)
  server.registerTool = ((name: string, config: never, cb: (...a: unknown[]) => unknown) =>
    register(name, config, (async (...a: unknown[]) => {
      try {
        return await cb(...a)
      } catch (e) {
        if (e instanceof Error) e.message = clean(e.message)
        throw e
      }
    }) as never)) as typeof server.registerTool
  const host = hostName()
  const asUser = (): WriteContext => ({ by: opts.user, now: Date.now() })
  const asJob = (): WriteContext => ({ by: actorLabel({ job: opts.job!, attempt: opts.attempt ?? 1 }, host, process.pid), now: Date.now() })
  const planRef = (p?: string) => p ?? opts.plan

  server.registerTool(
    "mc_report",
    {
      title: "Report this job's status",
      description:
        "Report this job's status to concord (the plan's orchestrator and humans see it at once). " +
        "status: working (actively coding), progress (milestone, give progress 0-100), blocked (stuck, needs help), " +
        "needs_review (done, wants a human look), completed (finished successfully: completes the job), failed (gave up: fails the job). " +
        "Only available to a job's agent (the server was started for a job).",
      inputSchema: {
        status: z.string().meta({ enum: [...REPORT_STATUSES], description: "working | progress | blocked | needs_review | completed | failed" }),
        message: z.string().describe("Human-readable status message"),
        progress: z.number().optional().meta({ minimum: 0, maximum: 100, description: "Completion percentage (0-100)" }),
      },
      outputSchema: {
        planId: z.string(),
        plan: z.string(),
        job: z.string(),
        attempt: z.number(),
        status: z.enum(REPORT_STATUSES),
        message: z.string(),
        progress: z.number().nullable(),
        jobStatus: z.enum(JOB_STATUSES),
        changed: z.boolean(),
        note: z.string().nullable(),
        via: z.enum(["endpoint", "store", "server"]).describe("where the report went: concord run's endpoint, the store, or a sync server"),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    },
    async args => {
      if (!opts.job) {
        throw new InputError(
          "mc_report is for a job's agent, and this concord MCP server was started for no job: start it as `concord mcp --plan PLAN --job JOB` " +
            "(concord run writes that configuration for every job: $CONCORD_MCP_CONFIG)",
          "not_a_job"
        )
      }
      // through `concord run`'s endpoint when it serves the plan on this machine (src/ops/endpoint.ts)
      const r = await reportRouted(
        backend,
        { planRef: opts.plan, job: opts.job, attempt: opts.attempt, status: args.status, message: args.message, progress: args.progress },
        asJob
      )
      const { text, ...structured } = r
      return result(r.note ? `${text}\nnote: ${r.note}` : text, structured)
    }
  )

  server.registerTool(
    "mc_status",
    {
      title: "One job's status",
      description:
        "Detailed status of one job: status, attempt, latest report, progress, exit code or error, and the last lines of its log (when this machine has it).",
      inputSchema: { name: z.string().describe("Job name"), plan: planArg },
      outputSchema: {
        plan: z.object({ id: z.string(), name: z.string(), status: z.string(), checkpoint: z.string().nullable() }),
        job: jobOut,
        recentOutput: z.array(z.string()).nullable(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async args => {
      const s = await status(backend, planRef(args.plan))
      const job = s.summary.jobs.find(j => j.name === args.name)
      if (!job) throw new InputError(`plan "${s.summary.name}" has no job "${args.name}" (jobs: ${s.summary.jobs.map(j => j.name).join(", ")})`, "not_found")
      let recent: string[] | null = null
      if (backend.storeDir && job.log) {
        recent = await tailLog(backend, { planRef: s.summary.id, job: job.name, lines: 10 }).then(
          t => t.lines,
          () => null
        )
      }
      const lines = [`plan ${s.summary.name} (${s.summary.status}${s.summary.checkpoint ? `, checkpoint ${s.summary.checkpoint}` : ""})`, jobLine(job, true)]
      if (recent?.length) lines.push("recent output:", ...recent.map(l => `  ${l}`))
      return result(lines.join("\n"), {
        plan: { id: s.summary.id, name: s.summary.name, status: s.summary.status, checkpoint: s.summary.checkpoint },
        job,
        recentOutput: recent,
      })
    }
  )

  server.registerTool(
    "mc_plan",
    {
      title: "Create a plan",
      description:
        "Create a plan of jobs with dependencies in concord's store. Each job runs its `run` shell command (default: the agent command this server " +
        `was configured with, else \`${DEFAULT_AGENT_COMMAND}\`) with its prompt in $CONCORD_PROMPT. ` +
        "Start it with `concord run PLAN` (the orchestrator); copilot plans wait for mc_plan_approve first.",
      inputSchema: {
        name: z.string().describe("Plan name"),
        jobs: z
          .array(
            z.looseObject({
              name: z.string().describe("Unique job name ([A-Za-z0-9._-], at most 64)"),
              prompt: z.string().describe("Task prompt for the agent ($CONCORD_PROMPT)"),
              dependsOn: z.array(z.string()).optional().describe("Names of jobs this one waits for"),
              run: z.string().optional().describe("Shell command that performs the job (default: the configured agent command)"),
              env: z.record(z.string(), z.string()).optional().describe("Extra environment variables"),
              cwd: z.string().optional().describe("Working directory, relative to the server's directory"),
            })
          )
          .describe("The jobs"),
        mode: z
          .enum(["autopilot", "copilot", "supervisor"])
          .optional()
          .describe("autopilot (default) runs to the end; copilot waits for approval first; supervisor also before each merge and the PR"),
        maxParallel: z.number().int().optional().describe("At most this many jobs at once (default 3)"),
      },
      outputSchema: {
        id: z.string(),
        url: z.string(),
        name: z.string(),
        mode: z.string(),
        jobs: z.array(z.object({ name: z.string(), run: z.string(), dependsOn: z.array(z.string()) })),
        sameName: z.array(z.string()),
        start: z.string(),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    },
    async args => {
      const raw: Record<string, unknown> = { name: args.name, jobs: args.jobs.map(j => ({ ...j, run: j.run ?? opts.agent ?? DEFAULT_AGENT_COMMAND })) }
      if (args.mode !== undefined) raw.mode = args.mode
      if (args.maxParallel !== undefined) raw.maxParallel = args.maxParallel
      const spec = validatePlanSpec(raw)
      const r = await createPlan(backend, spec, opts.baseDir, asUser)
      const start = `concord run ${r.id}`
      const lines = [
        `plan "${r.name}" created: ${r.id} (${spec.mode}, ${spec.jobs.length} job${spec.jobs.length === 1 ? "" : "s"})`,
        ...spec.jobs.map(j => `  - ${j.name}${j.dependsOn.length ? ` (depends on: ${j.dependsOn.join(", ")})` : ""}`),
        spec.mode === "copilot" ? `it waits for approval (mc_plan_approve); then start it with: ${start}` : `start it with: ${start}`,
      ]
      if (r.sameName.length) lines.push(`note: ${r.sameName.length} other plan(s) have this name; refer to this one by its id`)
      return result(lines.join("\n"), {
        id: r.id,
        url: r.url,
        name: r.name,
        mode: spec.mode,
        jobs: spec.jobs.map(j => ({ name: j.name, run: j.run, dependsOn: j.dependsOn })),
        sameName: r.sameName,
        start,
      })
    }
  )

  server.registerTool(
    "mc_plan_status",
    {
      title: "Plan status",
      description:
        "Status of a plan: every job with status, attempt, progress and latest report; counts; the checkpoint it waits at and what can be done there.",
      inputSchema: { plan: planArg },
      outputSchema: planOut.shape,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async args => {
      const s = await status(backend, planRef(args.plan))
      return result(planLines(s.summary, s.next, s.warnings).join("\n"), planStructured(s.summary, s.next, s.warnings))
    }
  )

  server.registerTool(
    "mc_plan_approve",
    {
      title: "Approve, retry or skip",
      description:
        "Approve a pending copilot plan or the checkpoint the plan waits at (on_error, pre_merge, pre_pr); retry a failed job (a new attempt with a fresh process) " +
        "or skip a job (its dependents go on without it). The running orchestrator acts on it; if none runs, `concord run` does.",
      inputSchema: {
        plan: planArg,
        checkpoint: z
          .enum(["approval", "on_error", "pre_merge", "pre_pr"])
          .optional()
          .describe("The checkpoint you approve (refused if the plan waits at another one)"),
        retry: z.string().optional().describe("Name of a failed, stopped or canceled job to run again"),
        relaunch: z.string().optional().describe("Same as retry (Mission Control's name for relaunching a job)"),
        skip: z.string().optional().describe("Name of a job to skip: it is canceled and its dependents go on without it"),
      },
      outputSchema: {
        planId: z.string(),
        plan: z.string(),
        approved: z.object({ checkpoint: z.string(), seq: z.number(), by: z.string() }).nullable(),
        retried: z.object({ job: z.string(), attempt: z.number() }).nullable(),
        skipped: z.string().nullable(),
        leftWaiting: z.object({ checkpoint: z.string(), job: z.string() }).nullable(),
        orchestrator: z.string().nullable(),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    },
    async args => {
      if (args.retry && args.relaunch && args.retry !== args.relaunch) throw new InputError("give either retry or relaunch (they mean the same)")
      const r = await approve(
        backend,
        { planRef: planRef(args.plan), checkpoint: args.checkpoint, retry: args.retry ?? args.relaunch, skip: args.skip },
        asUser
      )
      const { lines, ...structured } = r
      return result(lines.join("\n"), structured)
    }
  )

  server.registerTool(
    "mc_plan_cancel",
    {
      title: "Cancel a plan",
      description: "Cancel a plan: record canceled for it and every unfinished job, and stop their processes on this machine.",
      inputSchema: { plan: planArg },
      outputSchema: { planId: z.string(), plan: z.string(), canceled: z.array(z.string()), stopped: z.number(), host: z.string().nullable() },
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    async args => {
      // As in the CLI (which asks): canceling "whatever plan is newest" is refused when there are several.
      const target = await unnamedCancelTarget(backend, planRef(args.plan))
      if (target) throw new InputError(`${target.open} plans in ${backend.where}: name the plan to cancel (plan: id or name)`, "ambiguous_plan")
      const { text, ...structured } = await cancel(backend, { planRef: planRef(args.plan) }, asUser, opts.stop)
      return result(text, structured)
    }
  )

  server.registerTool(
    "mc_jobs",
    {
      title: "List jobs",
      description: "The plan's jobs with status, attempt, progress and latest report, optionally only those in one status.",
      inputSchema: {
        status: z
          .enum(["all", ...JOB_STATUSES])
          .optional()
          .describe("Only jobs in this status (default: all)"),
        plan: planArg,
      },
      outputSchema: { plan: z.object({ id: z.string(), name: z.string(), status: z.string() }), jobs: z.array(jobOut) },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async args => {
      const s = await status(backend, planRef(args.plan))
      const jobs = s.summary.jobs.filter(j => !args.status || args.status === "all" || j.status === args.status)
      const head = `plan ${s.summary.name} (${s.summary.status}): ${jobs.length} job${jobs.length === 1 ? "" : "s"}${args.status && args.status !== "all" ? ` ${args.status}` : ""}`
      return result([head, ...jobs.map(j => jobLine(j))].join("\n"), { plan: { id: s.summary.id, name: s.summary.name, status: s.summary.status }, jobs })
    }
  )

  server.registerTool(
    "mc_overview",
    {
      title: "Overview (start here)",
      description:
        "START HERE: every plan in the store with its status, the current plan's jobs, alerts (blocked, needs_review, failed, stale) and suggested next actions.",
      inputSchema: {},
      outputSchema: {
        plans: z.array(z.object({ id: z.string(), name: z.string(), status: z.string(), checkpoint: z.string().nullable(), jobs: z.number() })),
        current: planOut.nullable(),
        alerts: z.array(z.object({ job: z.string(), kind: z.string(), message: z.string() })),
        suggested: z.array(z.string()),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async () => {
      const { plans, warnings } = await listPlans(backend)
      const rows = plans.map(p => ({ id: p.id, name: p.name, status: p.status, checkpoint: p.checkpoint, jobs: p.jobs }))
      if (plans.length === 0 && !opts.plan) {
        return result(`no plans in ${backend.where} (create one with mc_plan)`, {
          plans: rows,
          current: null,
          alerts: [],
          suggested: ["create a plan with mc_plan"],
        })
      }
      const s = await status(backend, opts.plan)
      const alerts = overviewAlerts(s.summary.jobs)
      const suggested = s.next.map(n =>
        n.kind === "retry"
          ? `mc_plan_approve {retry: "${n.job}"}`
          : n.kind === "skip"
            ? `mc_plan_approve {skip: "${n.job}"}`
            : n.kind === "continue"
              ? `mc_plan_approve {checkpoint: "${n.checkpoint}"}`
              : `mc_plan_approve {checkpoint: "${n.checkpoint}"}`
      )
      if (s.summary.counts.running && !s.summary.lease) suggested.push(`no orchestrator holds the plan: start one with  concord run ${s.summary.id}`)
      if (alerts.length) suggested.push("look at a job with mc_status or mc_capture")
      const lines = [
        `plans in ${backend.where}:`,
        ...rows.map(p => `  ${p.id}  ${p.name}  ${p.status}${p.checkpoint ? ` (${p.checkpoint})` : ""}  ${p.jobs} jobs`),
        "",
        ...planLines(s.summary, s.next, [...warnings, ...s.warnings]),
        "",
        "alerts:",
        ...(alerts.length ? alerts.map(a => `  ${a.job} [${a.kind}]: ${a.message}`) : ["  none"]),
        "suggested:",
        ...(suggested.length ? suggested.map(a => `  ${a}`) : ["  nothing to do"]),
      ]
      return result(lines.join("\n"), { plans: rows, current: planStructured(s.summary, s.next, s.warnings), alerts, suggested })
    }
  )

  server.registerTool(
    "mc_capture",
    {
      title: "A job's output",
      description: "The last lines of a job's output (stdout and stderr of its process, from its log file; only on the machine that ran it).",
      inputSchema: {
        name: z.string().describe("Job name"),
        lines: z.number().int().optional().describe(`Number of lines (default ${DEFAULT_TAIL_LINES}, at most ${MAX_TAIL_LINES})`),
        attempt: z.number().int().optional().describe("Attempt (default: the current one)"),
        plan: planArg,
      },
      outputSchema: {
        planId: z.string(),
        plan: z.string(),
        job: z.string(),
        attempt: z.number(),
        file: z.string(),
        lines: z.array(z.string()),
        truncated: z.boolean(),
        size: z.number(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async args => {
      const t = await tailLog(backend, { planRef: planRef(args.plan), job: args.name, attempt: args.attempt, lines: args.lines })
      const head = `${t.job} #${t.attempt}: ${t.lines.length} line${t.lines.length === 1 ? "" : "s"}${t.truncated ? " (end of the log)" : ""} from ${t.file}`
      return result([head, ...t.lines].join("\n"), { ...t })
    }
  )

  server.registerTool(
    "mc_kill",
    {
      title: "Stop a job",
      description:
        "Stop one job: a running job becomes stopped (retry it later with mc_plan_approve), one that has not started is canceled; its process on this machine gets SIGTERM (force: SIGKILL).",
      inputSchema: { name: z.string().describe("Job name"), force: z.boolean().optional().describe("Force kill (SIGKILL)"), plan: planArg },
      outputSchema: {
        planId: z.string(),
        plan: z.string(),
        job: z.string(),
        attempt: z.number(),
        from: z.enum(JOB_STATUSES),
        status: z.enum(JOB_STATUSES),
        changed: z.boolean(),
        signaled: z.number(),
        host: z.string().nullable(),
      },
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    async args => {
      const { text, ...structured } = await kill(backend, { planRef: planRef(args.plan), job: args.name, force: args.force }, asUser, opts.stop)
      return result(text, structured)
    }
  )

  const jobName = (name: string | undefined, tool: string): string => {
    const n = name ?? opts.job
    if (!n) throw new InputError(`${tool} needs name (the job); this server was started for no job`)
    return n
  }
  const nameArg = z.string().optional().describe("Job name (default: the job this server was started for)")

  server.registerTool(
    "mc_diff",
    {
      title: "A job's changes",
      description:
        "Show what a job's current attempt changed in its git worktree (committed or not), as a unified diff or a diffstat: " +
        "against the commit it started from (default), or against the integration branch's head. Long diffs are cut (and say so).",
      inputSchema: {
        name: nameArg,
        stat: z.boolean().optional().describe("Show diffstat only"),
        against: z.enum(["start", "integration"]).optional().describe("start (default): where the attempt started; integration: the integration branch's head"),
        maxBytes: z.number().int().optional().describe(`Keep at most this many bytes of the diff (default ${DEFAULT_DIFF_BYTES}, at most ${MAX_DIFF_BYTES})`),
        plan: planArg,
      },
      outputSchema: {
        planId: z.string(),
        plan: z.string(),
        job: z.string(),
        attempt: z.number(),
        against: z.enum(["start", "integration"]),
        from: z.string(),
        to: z.enum(["worktree", "branch"]),
        branch: z.string(),
        files: z.array(z.object({ path: z.string(), added: z.number().nullable(), deleted: z.number().nullable() })),
        stat: z.boolean(),
        diff: z.string(),
        bytes: z.number(),
        truncated: z.boolean(),
      },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async args => {
      const { text, ...structured } = await diff(backend, {
        planRef: planRef(args.plan),
        job: jobName(args.name, "mc_diff"),
        stat: args.stat,
        against: args.against,
        maxBytes: args.maxBytes,
      })
      return result(text, structured)
    }
  )

  server.registerTool(
    "mc_merge",
    {
      title: "Ask for a job to be merged",
      description:
        "Ask for a completed job to be merged into the plan's integration branch. concord's merge queue does the merging (it tests the combined result " +
        "and moves the branch only to a commit that passed); this approves the job's pre_merge checkpoint in supervisor mode and reports where the job stands: " +
        "waiting for its dependencies, its place in the queue, or the commit it merged as. Refused for a job that has not completed or that the queue refused.",
      inputSchema: { name: z.string().describe("Job name"), plan: planArg },
      outputSchema: {
        planId: z.string(),
        plan: z.string(),
        job: z.string(),
        attempt: z.number(),
        status: z.enum(JOB_STATUSES),
        state: z.enum(["approved", "queued", "merging", "merged", "waiting"]),
        approved: z.object({ checkpoint: z.string(), seq: z.number(), by: z.string() }).nullable(),
        queue: z
          .object({
            state: z.string(),
            position: z.number().nullable(),
            ahead: z.array(z.string()),
            commit: z.string().nullable(),
            reason: z.string().nullable(),
          })
          .nullable(),
        waitingFor: z.array(z.string()),
        integrationBranch: z.string(),
        orchestrator: z.string().nullable(),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async args => {
      const { text, ...structured } = await requestMerge(backend, { planRef: planRef(args.plan), job: args.name }, asUser)
      return result(text, structured)
    }
  )

  server.registerTool(
    "mc_sync",
    {
      title: "Sync a job's worktree",
      description:
        "Bring a job's git worktree up to date with the plan's integration branch (what the merge queue merged since the job started), by rebase (default) or merge. " +
        "Refused when the worktree has uncommitted changes to tracked files; on a conflict it is aborted and the worktree is left as it was.",
      inputSchema: {
        name: nameArg,
        strategy: z.enum(["rebase", "merge"]).optional().describe("Sync strategy (default: rebase)"),
        plan: planArg,
      },
      outputSchema: {
        planId: z.string(),
        plan: z.string(),
        job: z.string(),
        attempt: z.number(),
        strategy: z.enum(["rebase", "merge"]),
        onto: z.string(),
        from: z.string(),
        head: z.string(),
        changed: z.boolean(),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async args => {
      const { text, ...structured } = await syncJob(
        backend,
        { planRef: planRef(args.plan), job: jobName(args.name, "mc_sync"), strategy: args.strategy },
        asUser
      )
      return result(text, structured)
    }
  )

  server.registerTool(
    "mc_pr",
    {
      title: "The plan's pull request",
      description:
        "The plan's pull request, from its integration branch to its base branch (one per plan, recorded once): opened with gh when the plan has completed " +
        "and it was not opened yet, else the recorded address, or the exact command when gh or the origin remote is missing. Refused before the plan completed.",
      inputSchema: {
        plan: planArg,
        name: z.string().optional().describe("Ignored but checked: a job of the plan (concord opens one PR per plan, not per job)"),
        title: z.string().optional().describe("PR title, when this call opens it (default: the plan's pr.title)"),
        body: z.string().optional().describe("Intro text of the PR body, when this call opens it (default: the plan's pr.body)"),
        draft: z.boolean().optional().describe("Open as a draft"),
      },
      outputSchema: {
        planId: z.string(),
        plan: z.string(),
        now: z.boolean(),
        url: z.string().nullable(),
        command: z.string(),
        manual: z.string().nullable(),
        at: z.number(),
        by: z.string(),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
    },
    async args => {
      if (args.name !== undefined) {
        const s = await status(backend, planRef(args.plan))
        if (!s.summary.jobs.some(j => j.name === args.name))
          throw new InputError(`plan "${s.summary.name}" has no job "${args.name}" (jobs: ${s.summary.jobs.map(j => j.name).join(", ")})`, "not_found")
      }
      const { text, ...structured } = await pullRequest(backend, { planRef: planRef(args.plan), title: args.title, body: args.body, draft: args.draft }, asUser)
      return result(text, structured)
    }
  )

  server.registerTool(
    "mc_cleanup",
    {
      title: "Remove worktrees",
      description:
        "Remove git worktrees concord made: one job's (name: its attempts that are over) or the whole plan's (all: refused while it runs). " +
        "deleteBranch also deletes the job branches of what was removed (never the integration branch).",
      inputSchema: {
        name: z.string().optional().describe("Specific job to clean up"),
        all: z.boolean().optional().describe("Clean up every worktree of the plan"),
        deleteBranch: z.boolean().optional().describe("Also delete the job branches"),
        plan: planArg,
      },
      outputSchema: {
        planId: z.string(),
        plan: z.string(),
        job: z.string().nullable(),
        repo: z.string(),
        removed: z.array(z.string()),
        branchesDeleted: z.array(z.string()),
        kept: z.array(z.object({ worktree: z.string(), why: z.string() })),
      },
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    async args => {
      if (!args.name && !args.all) throw new InputError("give either name (one job) or all (the whole plan)")
      if (args.name && args.all) throw new InputError("give either name or all, not both")
      const { text, ...structured } = await cleanup(backend, { planRef: planRef(args.plan), job: args.name, branches: args.deleteBranch })
      return result(text, structured)
    }
  )

  return server
}

function overviewAlerts(jobs: JobSummary[]): { job: string; kind: string; message: string }[] {
  const out: { job: string; kind: string; message: string }[] = []
  for (const j of jobs) {
    if (j.status === "failed") out.push({ job: j.name, kind: "failed", message: j.error ?? "failed" })
    else if (j.stale) out.push({ job: j.name, kind: "stale", message: "no output or report for a while" })
    else if (j.status === "running" && j.lastReport && (j.lastReport.status === "blocked" || j.lastReport.status === "needs_review")) {
      out.push({ job: j.name, kind: j.lastReport.status, message: j.lastReport.message })
    }
  }
  return out
}
