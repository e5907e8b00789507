// Time ranges and the aggregate window each is charted with: the number of points stays in the
// hundreds whatever the range, so a week draws as fast as fifteen minutes.

export interface Range {
  label: string;
  seconds: number;
  /** A custom range has fixed ends (and is not live); the others end now. */
  fixed?: { from: Date; to: Date };
}

/** The interval a range covers at `now`. */
export function interval(range: Range, now: Date = new Date()): { from: Date; to: Date; live: boolean } {
  if (range.fixed) return { ...range.fixed, live: false };
  return { from: new Date(now.getTime() - range.seconds * 1000), to: now, live: true };
}

export const RANGES: Range[] = [
  { label: 'Last 15 minutes', seconds: 15 * 60 },
  { label: 'Last hour', seconds: 3600 },
  { label: 'Last day', seconds: 86400 },
  { label: 'Last week', seconds: 7 * 86400 },
];

/** The hub's default windows (`HUB_ANALYTICS_WINDOWS`), smallest first, in seconds. */
export const WINDOWS: [string, number][] = [
  ['1m', 60],
  ['1h', 3600],
];

/** The smallest window that charts `seconds` in at most `maxPoints` points. */
export function windowFor(seconds: number, maxPoints = 1500): string {
  for (const [name, size] of WINDOWS) {
    if (seconds / size <= maxPoints) return name;
  }
  return WINDOWS[WINDOWS.length - 1][0];
}

/** A custom range typed as `from`/`to` (datetime-local values), checked. */
export function customRange(from: string, to: string): Range {
  const start = new Date(from);
  const end = new Date(to);
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) {
    throw new Error('both ends of a custom range are needed');
  }
  if (start >= end) throw new Error('the range must end after it starts');
  return {
    label: `${start.toLocaleString()} – ${end.toLocaleString()}`,
    seconds: (end.getTime() - start.getTime()) / 1000,
    fixed: { from: start, to: end },
  };
}
