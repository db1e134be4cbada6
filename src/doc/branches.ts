/**
 * Branch names of git plans. Pure and dependency-free (spec.ts validates with them, merge.ts and the
 * orchestrator name branches with them; commands that never parse a spec stay free of yaml and zod).
 */

/**
 * Why `name` cannot be a git branch name (a simplified `git check-ref-format --branch`), or undefined
 * when it can. Checked here so a bad name is refused when the plan is created, not mid-run.
 */
export function branchNameProblem(name: string): string | undefined {
  if (name.length > 200) return "is longer than 200 characters"
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(name)) return "contains a space, a control character or one of ~ ^ : ? * [ \\"
  if (name.startsWith("-")) return "starts with -"
  if (name.startsWith("/") || name.endsWith("/") || name.includes("//")) return "has an empty path component"
  if (name.includes("..")) return 'contains ".."'
  if (name.includes("@{") || name === "@") return 'contains "@{" or is "@"'
  if (name.endsWith(".")) return 'ends with "."'
  for (const part of name.split("/")) {
    if (part.startsWith(".")) return `has a component starting with "." (${JSON.stringify(part)})`
    if (part.endsWith(".lock")) return `has a component ending with ".lock" (${JSON.stringify(part)})`
  }
  return undefined
}

/** A plan name turned into one branch-name component: runs of other characters become "-". */
function refSlug(name: string): string {
  const slug = name
    .replace(/[^A-Za-z0-9._-]+/g, "-")
    .replace(/\.{2,}/g, ".")
    .replace(/^[.-]+/, "")
    .replace(/[.-]+$/, "")
    .replace(/\.lock$/, "-lock")
  return slug.slice(0, 100) || "plan"
}

export function defaultIntegrationBranch(planName: string): string {
  return `concord/${refSlug(planName)}`
}

/**
 * A job's branch for one attempt. Not `concord/<plan>/<job>`: git cannot have both a branch
 * `concord/<plan>` (the default integration branch) and branches below it, so job branches sit beside it.
 */
export function jobBranch(integrationBranch: string, job: string, attempt: number): string {
  return `${integrationBranch}--${job}${attempt > 1 ? `--${attempt}` : ""}`
}
