import { describe, expect, it } from 'vitest';

import { toSeries } from './chart';
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
