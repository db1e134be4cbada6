#!/usr/bin/env node
import { main } from "../dist/src/cli/main.js"

main(process.argv).then(
  code => process.exit(code),
  err => {
    process.stderr.write(`concord: ${err?.stack ?? err}\n`)
    process.exit(1)
  }
)
