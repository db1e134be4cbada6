/** Who this CLI process acts as (light: the lean report start-up uses it too). */
import os from "node:os"
import { actorLabel } from "../doc/actor.js"
import { hostName } from "../lib/host.js"

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
