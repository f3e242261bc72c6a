// Summaries of paired measurements: the median ratio and its range.

export function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** { median, min, max } of a list of numbers. */
export function summary (values) {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) }
}

/** `0.97 (0.91–1.02)` */
export function formatRatio ({ median, min, max }, digits = 2) {
  return `${median.toFixed(digits)} (${min.toFixed(digits)}–${max.toFixed(digits)})`
}
