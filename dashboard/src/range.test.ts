import { describe, expect, it } from 'vitest';

import { toSeries, withRecent } from './chart';
import { RANGES, customRange, interval, windowFor } from './range';

describe('chart windows', () => {
  it('keeps every range within a chartable number of points', () => {
    expect(windowFor(15 * 60)).toBe('1m');
    expect(windowFor(86400)).toBe('1m');
    expect(windowFor(7 * 86400)).toBe('1h');
    for (const range of RANGES) {
      const size = windowFor(range.seconds) === '1m' ? 60 : 3600;
      expect(range.seconds / size).toBeLessThanOrEqual(1500);
    }
  });

  it('refuses a custom range that ends before it starts', () => {
    expect(() => customRange('2026-12-02T10:00', '2026-12-02T09:00')).toThrow(/end after/);
    const custom = customRange('2026-12-02T09:00', '2026-12-02T10:00');
    expect(custom.seconds).toBe(3600);
    expect(interval(custom).live).toBe(false);
    expect(interval(RANGES[0], new Date(1_000_000)).from.getTime()).toBe(1_000_000 - 900_000);
  });

  it('orders windows by start for the chart', () => {
    const point = (start: string, mean: number) => ({
      windowStart: start,
      windowEnd: start,
      count: 1,
      min: mean - 1,
      max: mean + 1,
      mean,
    });
    const series = toSeries([point('2026-12-02T10:01:00Z', 2), point('2026-12-02T10:00:00Z', 1)]);
    expect(series.mean).toEqual([1, 2]);
    expect(series.times[1] - series.times[0]).toBe(60);
  });
});

describe('raw recent points', () => {
  it('follow the windows that end before the oldest of them', () => {
    const end = (start: string) => new Date(Date.parse(start) + 60_000).toISOString();
    const window = (start: string, mean: number) => ({ windowStart: start, windowEnd: end(start), count: 2, min: mean - 1, max: mean + 1, mean, last: { value: mean, time: start } });
    const series = toSeries([window('2026-01-01T00:00:00Z', 10), window('2026-01-01T00:01:00Z', 20), window('2026-01-01T00:02:00Z', 30)]);
    const merged = withRecent(
      series,
      [
        { t: '2026-01-01T00:01:30Z', v: { t: 21 } },
        { t: '2026-01-01T00:02:10Z', v: { t: 31, other: 1 } },
        { t: '2026-01-01T00:02:20Z', v: { other: 2 } },
      ],
      't',
      new Date('2026-01-01T00:00:00Z'),
      new Date('2026-01-01T00:10:00Z'),
    );
    const at = (iso: string) => Date.parse(iso) / 1000;
    // The 00:01 window holds the 00:01:30 reading: it gives way to the raw points.
    expect(merged.times).toEqual([at('2026-01-01T00:00:00Z'), at('2026-01-01T00:01:30Z'), at('2026-01-01T00:02:10Z')]);
    expect(merged.mean).toEqual([10, 21, 31]);
    expect(merged.counts.reduce((a, b) => a + b, 0)).toBe(2 + 2);
    expect(merged.min.slice(1)).toEqual([21, 31]);
    expect(merged.raw).toBe(2);
    expect(merged.latest).toBe(Date.parse('2026-01-01T00:02:10Z'));
    expect(withRecent(series, [], 't', new Date(0), new Date())).toBe(series);
  });
});
