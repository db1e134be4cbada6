/** `--remote URL --token T [--ca FILE]`: validating the flags, and `concord run --remote`'s mirror. */
import { promises as fsp } from "node:fs"
import { InputError, NotFoundError } from "../doc/errors.js"
import { pick } from "../ops/resolve.js"
import type { PlanStore } from "../sync/store/PlanStore.js"
import { type RemoteTarget, ServerApi } from "../sync/net/client.js"
import { type Mirror, openMirror } from "../sync/net/mirror.js"
import { say } from "./output.js"

export interface RemoteFlags {
  remote?: string
  token?: string
  ca?: string
}

/** Validate --remote / --token / --ca (token default: $CONCORD_TOKEN). */
export async function remoteTarget(flags: RemoteFlags): Promise<RemoteTarget | undefined> {
  if (!flags.remote) {
    if (flags.token) throw new InputError("--token needs --remote URL")
    return undefined
  }
  const token = flags.token ?? process.env.CONCORD_TOKEN
  if (!token) throw new InputError("--remote needs a token: --token T or $CONCORD_TOKEN")
  let ca: Buffer | undefined
  if (flags.ca) {
    try {
      ca = await fsp.readFile(flags.ca)
    } catch (e) {
      throw new InputError(`cannot read CA file ${flags.ca}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  return { url: flags.remote, token, ca }
}

/** `concord run --remote`: validate the flags, find the plan on the server, mirror it into `store`. */
export async function openRemoteRun(store: PlanStore, flags: RemoteFlags, planRef: string | undefined): Promise<Mirror> {
  const target = (await remoteTarget(flags))!
  const api = new ServerApi(target.url, target.token, target.ca)
  const remote = await api.plans()
  const where = { where: `the plans this token (${remote.token.id}) can see on the server` }
  const plans = [...remote.plans].sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))
  const hit = pick(plans, planRef, where)
  if (!hit) throw new NotFoundError(planRef ? `no plan "${planRef}" among ${where.where}` : `the server has no plan this token (${remote.token.id}) can see`)
  await store.create() // a first run of a server's plan on this machine makes the local store
  return openMirror(store, target, hit.id, l => (l.startsWith("debug:") ? undefined : say(l)))
}
