// The seam for concord's networked ways (src/sync/net/, being built in parallel): a local endpoint and
// a sync server, used by workloads 3 (visibility) and 6 (sync).
//
// When src/sync/net/ exports what is needed, implement these here (and nothing else changes):
//   visibility["local endpoint"](cfg) / visibility["sync server"](cfg) -> { lat: ms[], missed }
//   sync(changesPerPeer) -> { convergeMs, ok }   two peers, each with N offline changes, then connect
import { existsSync } from "node:fs"
import path from "node:path"
import { ROOT } from "./concord.mjs"

const NET_DIR = path.join(ROOT, "dist/src/sync/net")

export async function netStatus() {
  if (!existsSync(path.join(ROOT, "src/sync/net"))) {
    return { available: false, reason: "src/sync/net/ does not exist yet (the sync work is in progress elsewhere)" }
  }
  if (!existsSync(NET_DIR)) {
    return { available: false, reason: "src/sync/net/ exists but is not built into dist/ (run npm run build)" }
  }
  return {
    available: false,
    reason: "src/sync/net/ exists but bench/lib/net.mjs has not been wired to its API yet",
  }
}
