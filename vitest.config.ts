import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Multi-process tests spawn their own OS processes; keep the outer parallelism modest on 2 cores.
    maxWorkers: 2,
    minWorkers: 1,
  },
})
