import { describe, expect, it } from 'vitest';

import { Alert } from './api';
import { bucketFor, raisesBy, raisesOverTime } from './history';

const alert = (severity: string, ...raisedAt: string[]): Alert => ({
  ruleId: 'r',
  deviceId: 'd',
  severity,
  active: false,
  recentRaises: raisedAt.map((at) => ({ raisedAt: at, value: 1 })),
});

describe('alerts over time', () => {
  it('chooses round buckets for the range', () => {
    expect(bucketFor(15 * 60)).toBe(60);
    expect(bucketFor(3600)).toBe(60);
    expect(bucketFor(86400)).toBe(1800);
    expect(bucketFor(7 * 86400)).toBe(3 * 3600);
  });

  it('counts raises per bucket and severity within the range only', () => {
    const from = new Date('2026-01-01T10:00:00Z');
    const to = new Date('2026-01-01T11:00:00Z');
    const histogram = raisesOverTime(
      [
        alert('critical', '2026-01-01T10:00:30Z', '2026-01-01T10:00:59Z', '2026-01-01T09:59:59Z'),
        alert('warning', '2026-01-01T10:59:00Z'),
        alert('odd', '2026-01-01T10:30:00Z'),
      ],
      from,
      to,
      ['critical', 'warning'],
    );
    expect(histogram.bucketSeconds).toBe(60);
    expect(histogram.times.length).toBe(60);
    expect(histogram.bySeverity.get('critical')?.[0]).toBe(2);
    expect(histogram.bySeverity.get('warning')?.[59]).toBe(1);
    expect(histogram.bySeverity.get('odd')?.[30]).toBe(1);
    expect(histogram.total).toBe(4);
  });
});

describe('who alerted most', () => {
  it('counts raises in the range per rule and device', () => {
    const from = new Date('2026-01-01T10:00:00Z');
    const to = new Date('2026-01-01T11:00:00Z');
    const { byRule, byDevice } = raisesBy(
      [
        { ...alert('critical', '2026-01-01T10:10:00Z', '2026-01-01T10:20:00Z', '2026-01-01T09:00:00Z'), ruleId: 'hot', deviceId: 'a' },
        { ...alert('warning', '2026-01-01T10:30:00Z'), ruleId: 'hot', deviceId: 'b' },
        { ...alert('warning', '2026-01-01T08:30:00Z'), ruleId: 'cold', deviceId: 'b' },
      ],
      from,
      to,
    );
    expect([...byRule]).toEqual([['hot', 3]]);
    expect([...byDevice]).toEqual([['a', 2], ['b', 1]]);
  });
});

describe('group points', () => {
  it('merge as the hub merges them', async () => {
    const { mergePoints } = await import('./api');
    const point = (start: string, count: number, min: number, max: number, mean: number) => ({
      windowStart: start,
      windowEnd: start,
      count,
      min,
      max,
      mean,
      sum: mean * count,
    });
    const merged = mergePoints([
      [point('2026-01-01T00:01:00Z', 2, 1, 3, 2), point('2026-01-01T00:00:00Z', 1, 5, 5, 5)],
      [point('2026-01-01T00:01:00Z', 2, 0, 10, 6)],
    ]);
    expect(merged.map((p) => [p.windowStart, p.count, p.min, p.max, p.mean])).toEqual([
      ['2026-01-01T00:00:00Z', 1, 5, 5, 5],
      ['2026-01-01T00:01:00Z', 4, 0, 10, 4],
    ]);
  });
});
