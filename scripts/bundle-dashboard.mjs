// Bundle the dashboard page (src/dashboard/page/) into dist/dashboard/: app.js (with dagre), app.css,
// index.html. Everything the page needs is served by concord itself; nothing comes from a CDN.
import { build } from "esbuild"
import { copyFileSync, mkdirSync } from "node:fs"

mkdirSync("dist/dashboard", { recursive: true })
await build({
  entryPoints: ["src/dashboard/page/main.ts"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2020"],
  minify: true,
  sourcemap: false,
  outfile: "dist/dashboard/app.js",
  logLevel: "warning",
  legalComments: "none",
})
for (const f of ["index.html", "app.css"]) copyFileSync(`src/dashboard/page/${f}`, `dist/dashboard/${f}`)
