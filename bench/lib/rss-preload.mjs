// Loaded with `node --import` by the benchmark: writes the process's peak RSS (KiB) at exit.
import { writeFileSync } from "node:fs"

const file = process.env.CONCORD_BENCH_RSS_FILE
if (file) {
  process.on("exit", () => {
    try {
      writeFileSync(file, String(process.resourceUsage().maxRSS))
    } catch {
      // nowhere to report
    }
  })
}
