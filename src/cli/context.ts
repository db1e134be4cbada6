/** What every command needs: the store, who is acting, and the clock. */
import os from "node:os"
import { actorLabel, type WriteContext } from "../doc/actor.js"
import { PlanStore } from "../sync/store/PlanStore.js"
import { locateStore } from "../sync/store/locate.js"

export interface GlobalOptions {
  store?: string
}

export function openStore(opts: GlobalOptions): PlanStore {
  return new PlanStore(locateStore({ store: opts.store }).dir)
}

export function hostName(): string {
  return os.hostname().split(".")[0] || "localhost"
}

/**
 * The readable actor for changes made by this process: a job's agent when run by the orchestrator
 * (`job:api#2@host:pid`, from CONCORD_JOB / CONCORD_ATTEMPT), else the human at this machine.
 */
export function cliActor(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CONCORD_ACTOR) return env.CONCORD_ACTOR
  if (env.CONCORD_JOB) {
    const attempt = Number(env.CONCORD_ATTEMPT) || 1
    return actorLabel({ job: env.CONCORD_JOB, attempt }, hostName(), process.pid)
  }
  const user = os.userInfo().username || "user"
  return `${user === "root" ? "user" : user}@${hostName()}`
}

export function writeContext(by = cliActor()): WriteContext {
  return { by, now: Date.now() }
}

/** A fresh write context for every change, so each carries its own time. */
export function clock(by = cliActor()): () => WriteContext {
  return () => ({ by, now: Date.now() })
}
