/** This machine's short host name, as recorded in leases, attempts and actor labels. */
import os from "node:os"

/** Read once per process (a system call each time otherwise, on every report a long-lived sender routes). */
let cached: string | undefined

export function hostName(): string {
  cached ??= os.hostname().split(".")[0] || "localhost"
  return cached
}
