// Preloaded with `node -r` (CommonJS, so it starts no ES module loader of its own): writes the Node
// built-ins the process loaded (process.moduleLoadList, e.g. "NativeModule net") to
// $CONCORD_TEST_BUILTINS_LOG at exit, one per line (test/cli/lean.test.ts checks what a report loads).
const { writeFileSync } = require("node:fs")

process.on("exit", () => writeFileSync(process.env.CONCORD_TEST_BUILTINS_LOG, `${process.moduleLoadList.join("\n")}\n`))
