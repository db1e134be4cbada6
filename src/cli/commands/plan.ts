import { promises as fsp } from "node:fs"
import path from "node:path"
import type { Command } from "commander"
import { InputError } from "../../doc/errors.js"
import { archivePlan, createPlan, listPlans, removePlan } from "../../ops/plans.js"
import { resolvePlan } from "../../ops/resolve.js"
import { confirm } from "../confirm.js"
import { clock, type GlobalOptions, openBackend } from "../context.js"
import { ago, out, printJson, say, table } from "../output.js"

export function registerPlan(program: Command, globals: () => GlobalOptions): void {
  const plan = program.command("plan").description("create and list plans")

  plan
    .command("create")
    .argument("<file>", "plan spec (YAML or JSON)")
    .option("--json", "print {id, url} as JSON")
    .description("validate a plan file and create the plan in the store")
    .action(async (file: string, opts: { json?: boolean }) => {
      let text: string
      try {
        text = await fsp.readFile(file, "utf8")
      } catch (e) {
        throw new InputError(`cannot read plan file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
      }
      // Loaded on demand: only this command needs the YAML parser and the schema library.
      const { parsePlanSpec } = await import("../../doc/spec.js")
      const spec = parsePlanSpec(text, file)
      const backend = await openBackend(globals())
      try {
        const r = await createPlan(backend, spec, path.dirname(path.resolve(file)), clock())
        if (r.sameName.length) {
          say(
            `warning: ${r.sameName.length} other plan${r.sameName.length === 1 ? " is" : "s are"} named "${r.name}" (${r.sameName.join(", ")}); refer to this one by its id`
          )
        }
        if (opts.json) printJson({ id: r.id, url: r.url })
        else out(r.id)
      } finally {
        await backend.close()
      }
    })

  plan
    .command("list")
    .option("--json", "print as JSON")
    .option("--all", "include archived plans")
    .option("--remote <url>", "list the plans a token can see on a sync server instead")
    .option("--token <token>", "access token for --remote (default $CONCORD_TOKEN)")
    .option("--ca <file>", "CA certificate to trust for a wss:// --remote")
    .description("list the plans in the store")
    .action(async (opts: { json?: boolean; all?: boolean; remote?: string; token?: string; ca?: string }) => {
      if (opts.remote) {
        const token = opts.token ?? process.env.CONCORD_TOKEN
        if (!token) throw new InputError("no token: use --token T or set CONCORD_TOKEN")
        const { listServerPlans, readCa } = await import("./sync.js")
        return listServerPlans(opts.remote, token, await readCa(opts.ca), opts.json)
      }
      const backend = await openBackend(globals())
      try {
        const { plans: rows, warnings } = await listPlans(backend, { all: opts.all })
        for (const w of warnings) say(`warning: ${w}`)
        if (opts.json) return printJson(rows)
        if (rows.length === 0) return out(`no plans in ${backend.where.replace(/^store /, "")}`)
        const now = Date.now()
        for (const l of table([
          ["ID", "NAME", "STATUS", "JOBS", "CREATED"],
          ...rows.map(r => [
            r.id,
            r.name,
            (r.checkpoint ? `${r.status} (${r.checkpoint})` : r.status) + (r.archived ? ", archived" : ""),
            String(r.jobs),
            ago(r.createdAt, now),
          ]),
        ]))
          out(l)
      } finally {
        await backend.close()
      }
    })

  plan
    .command("archive")
    .argument("[plan]", "plan id, url or name")
    .option("--prune-logs", "also delete the plan's job log files")
    .option("--json", "print the result as JSON")
    .description("hide a plan that is not running from plan list and from the default plan choice (plan list --all shows it)")
    .action(async (planRef: string | undefined, opts: { pruneLogs?: boolean; json?: boolean }) => {
      const backend = await openBackend(globals())
      try {
        const r = await archivePlan(backend, planRef, { pruneLogs: opts.pruneLogs })
        if (opts.json) return printJson(r)
        out(r.text)
      } finally {
        await backend.close()
      }
    })

  plan
    .command("rm")
    .argument("<plan>", "plan id, url or name")
    .option("-y, --yes", "do not ask")
    .option("--json", "print the result as JSON")
    .description("delete a plan that is not running, its report logs and its job logs from this store (a sync server keeps its copy)")
    .action(async (planRef: string, opts: { yes?: boolean; json?: boolean }) => {
      const backend = await openBackend(globals())
      try {
        const p = await resolvePlan(backend, planRef)
        await confirm(`delete plan "${p.name}" (${p.id}) and its reports and logs from ${backend.where}?`, { yes: opts.yes, flagHint: "pass --yes" })
        const r = await removePlan(backend, p.id)
        if (opts.json) return printJson(r)
        out(r.text)
      } finally {
        await backend.close()
      }
    })
}
