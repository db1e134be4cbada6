import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Multi-process tests spawn their own OS processes; keep the outer parallelism modest on 2 cores.
    maxWorkers: 2,
    // In CI (CI=true) a failed test is run once more: many tests here time real processes, sockets and
    // browsers on a 2-core machine, and one slow moment should not decide a run. A real failure fails twice.
    retry: process.env.CI ? 1 : 0,
    minWorkers: 1,
  },
})
