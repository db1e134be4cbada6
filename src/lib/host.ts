/** This machine's short host name, as recorded in leases, attempts and actor labels. */
import os from "node:os"

export function hostName(): string {
  return os.hostname().split(".")[0] || "localhost"
}
