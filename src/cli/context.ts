/** What every command needs: the store, who is acting, and the clock. */
import type { WriteContext } from "../doc/actor.js"
import { cliActor } from "./actor.js"
import type { PlanBackend } from "../ops/backend.js"
import { LocalBackend } from "../ops/local.js"
import { PlanStore } from "../sync/store/PlanStore.js"
import { locateStore } from "../sync/store/locate.js"
import { say } from "./output.js"

export { cliActor }

export interface GlobalOptions {
  store?: string
}

/**
 * `live`: for a long-lived process speaking for one writer (`concord mcp`): it keeps the documents it uses
 * in memory and writes with blocking calls (DocStoreOptions.live and blockingWrites). `ready`: for the
 * one-shot `concord report` (src/cli/lean.ts), see DocStoreOptions.ready; it reads and writes with
 * blocking calls, having nothing else to do meanwhile (its reads wait for no thread-pool round trip).
 */
export function openStore(opts: GlobalOptions, live = false, ready?: Promise<unknown>): PlanStore {
  return new PlanStore(locateStore({ store: opts.store }).dir, {
    ...(live ? { live, blockingWrites: true } : {}),
    ...(ready ? { ready, blockingWrites: true, blockingReads: true } : {}),
  })
}

export interface RemoteOptions {
  remote?: string
  token?: string
  ca?: string
}

/**
 * Where a command's plans live: the sync server named by `--remote URL --token T`, else the local store.
 * The caller closes it.
 */
export async function openBackend(
  globals: GlobalOptions,
  flags: RemoteOptions = {},
  opts: { watch?: boolean; retry?: boolean; live?: boolean } = {}
): Promise<PlanBackend> {
  if (flags.remote || flags.token) {
    const { remoteTarget } = await import("./remote.js")
    const { RemoteBackend } = await import("../ops/remote.js")
    const target = (await remoteTarget(flags))!
    const log = (l: string) => (l.startsWith("debug:") ? undefined : say(l))
    return RemoteBackend.open(target, { log: opts.watch ? log : undefined, retry: opts.retry ?? true })
  }
  return new LocalBackend(openStore(globals, opts.live))
}

/** A fresh write context for every change, so each carries its own time. */
export function clock(by = cliActor()): () => WriteContext {
  return () => ({ by, now: Date.now() })
}
