// Small statistics: quantiles (linear interpolation), summaries, least-squares fits.
export function quantile(xs, q) {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  const pos = (s.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return s[lo] + (s[hi] - s[lo]) * (pos - lo)
}
export const median = xs => quantile(xs, 0.5)
export const p99 = xs => quantile(xs, 0.99)
export const mean = xs => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null)

export function summary(xs) {
  return { n: xs.length, min: Math.min(...xs), p50: median(xs), p90: quantile(xs, 0.9), p99: p99(xs), max: Math.max(...xs), mean: mean(xs) }
}

/** y = a + b x by least squares, with R². */
export function linearFit(xs, ys) {
  const n = xs.length
  const mx = mean(xs)
  const my = mean(ys)
  let sxy = 0
  let sxx = 0
  let syy = 0
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my)
    sxx += (xs[i] - mx) ** 2
    syy += (ys[i] - my) ** 2
  }
  const b = sxx === 0 ? 0 : sxy / sxx
  const a = my - b * mx
  const r2 = syy === 0 ? 1 : (sxy * sxy) / (sxx * syy)
  return { a, b, r2 }
}

/** y = c · x^k (least squares in log-log space), with R² of the log-log fit. */
export function powerFit(xs, ys) {
  const ok = xs.map((x, i) => [x, ys[i]]).filter(([x, y]) => x > 0 && y > 0)
  if (ok.length < 2) return null
  const { a, b, r2 } = linearFit(
    ok.map(([x]) => Math.log(x)),
    ok.map(([, y]) => Math.log(y))
  )
  return { c: Math.exp(a), k: b, r2 }
}

export function round(x, digits = 1) {
  if (x === null || x === undefined || !Number.isFinite(x)) return x
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** Match reports made durable at `durable[i]` with when a watcher first saw them (`seen["v-" + i]`). */
export function latencies(durable, seen) {
  const lat = []
  let missed = 0
  durable.forEach((t, i) => {
    const s = seen[`v-${i}`]
    if (s === undefined) missed++
    else lat.push(s - t)
  })
  return { lat, missed }
}
