// Alerts over time: the raises each alert remembers (its last ten), counted per time bucket and
// severity for the chosen range.

import { Alert } from './api';

export interface Histogram {
  /** Bucket starts, seconds since the epoch. */
  times: number[];
  bucketSeconds: number;
  /** Raises per bucket, by severity. */
  bySeverity: Map<string, number[]>;
  total: number;
}

/** A round bucket size giving at most `maxBuckets` buckets over `seconds`. */
export function bucketFor(seconds: number, maxBuckets = 60): number {
  const sizes = [60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400];
  return sizes.find((size) => seconds / size <= maxBuckets) ?? 86400;
}

export function raisesOverTime(alerts: Alert[], from: Date, to: Date, severities: string[]): Histogram {
  const seconds = Math.max(1, (to.getTime() - from.getTime()) / 1000);
  const bucket = bucketFor(seconds);
  const first = Math.floor(from.getTime() / 1000 / bucket) * bucket;
  const count = Math.max(1, Math.ceil((to.getTime() / 1000 - first) / bucket));
  const times = Array.from({ length: count }, (_, i) => first + i * bucket);
  const bySeverity = new Map<string, number[]>(severities.map((s) => [s, new Array<number>(count).fill(0)]));
  let total = 0;
  for (const alert of alerts) {
    const severity = alert.severity ?? 'none';
    for (const raise of alert.recentRaises ?? []) {
      const at = Date.parse(raise.raisedAt);
      if (Number.isNaN(at) || at < from.getTime() || at > to.getTime()) continue;
      const index = Math.min(count - 1, Math.floor((at / 1000 - first) / bucket));
      let row = bySeverity.get(severity);
      if (!row) {
        row = new Array<number>(count).fill(0);
        bySeverity.set(severity, row);
      }
      row[index] += 1;
      total += 1;
    }
  }
  return { times, bucketSeconds: bucket, bySeverity, total };
}

/** Raises within `[from, to]` per rule and per device: who alerted most in the range. */
export function raisesBy(alerts: Alert[], from: Date, to: Date): { byRule: Map<string, number>; byDevice: Map<string, number> } {
  const byRule = new Map<string, number>();
  const byDevice = new Map<string, number>();
  for (const alert of alerts) {
    const raises = (alert.recentRaises ?? []).filter((r) => {
      const at = Date.parse(r.raisedAt);
      return at >= from.getTime() && at <= to.getTime();
    }).length;
    if (raises === 0) continue;
    byRule.set(alert.ruleId, (byRule.get(alert.ruleId) ?? 0) + raises);
    byDevice.set(alert.deviceId, (byDevice.get(alert.deviceId) ?? 0) + raises);
  }
  return { byRule, byDevice };
}
