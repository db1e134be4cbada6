// Preloaded with `node --import`: writes the URL of every module the process loads, one per line, to
// $CONCORD_TEST_MODULE_LOG (test/cli/lean.test.ts checks which code a command loads).
import { register } from "node:module"

register("./module-log-hooks.mjs", import.meta.url)
