// The module hooks of test/cli/module-log.mjs (they run on Node's hooks thread).
import { appendFileSync } from "node:fs"

export async function resolve(specifier, context, next) {
  const r = await next(specifier, context)
  appendFileSync(process.env.CONCORD_TEST_MODULE_LOG, `${r.url}\n`)
  return r
}
