// Times as the page shows them.

// Milliseconds since the epoch from Unix seconds, milliseconds or an ISO string.
export function toMillis(value) {
  if (value == null) return null;
  if (typeof value === "number") return value > 1e12 ? value : value * 1000;
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? null : parsed;
}

// "42 s" or "3 min 05 s".
export function formatSeconds(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "";
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${String(seconds % 60).padStart(2, "0")} s`;
}

// " (stage 1 4 s, stage 2 6 s)" from the per-stage timings, or "".
export function formatTimings(timings) {
  if (!timings) return "";
  const names = { stage1: "stage 1", stage2: "stage 2" };
  const parts = Object.entries(names)
    .filter(([key]) => typeof timings[key] === "number")
    .map(([key, label]) => `${label} ${timings[key] < 10 ? `${timings[key].toFixed(1)} s` : formatSeconds(timings[key])}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}
