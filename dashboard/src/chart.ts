// A telemetry chart: the window mean as a line inside its min/max band (uPlot).

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

import { WindowPoint } from './api';

export interface Series {
  times: number[];
  mean: (number | null)[];
  min: (number | null)[];
  max: (number | null)[];
  /** Readings per point (1 for a raw reading). */
  counts: number[];
  /** When the latest reading drawn was taken (ms since the epoch; 0: none): it moves with every
   * new reading, even within a window. */
  latest: number;
  /** How many of the points are raw readings (the last ones). */
  raw: number;
  /** Where each point's window ends (seconds; a raw reading's is its time). */
  ends?: number[];
}

/** Points (windows) to the chart's columns: seconds since the epoch, by window start. */
export function toSeries(points: WindowPoint[]): Series {
  const sorted = [...points].sort((a, b) => Date.parse(a.windowStart) - Date.parse(b.windowStart));
  return {
    times: sorted.map((p) => Date.parse(p.windowStart) / 1000),
    mean: sorted.map((p) => p.mean ?? null),
    min: sorted.map((p) => p.min ?? null),
    max: sorted.map((p) => p.max ?? null),
    counts: sorted.map((p) => p.count ?? 0),
    latest: Math.max(0, ...sorted.map((p) => Date.parse(p.last?.time ?? p.windowStart) || 0)),
    raw: 0,
    ends: sorted.map((p) => Date.parse(p.windowEnd) / 1000),
  };
}

/** The windows up to the oldest raw reading, then the raw readings of `field` within
 * `[from, to]`: raw recent points, then aggregates. */
export function withRecent(
  series: Series,
  readings: { t: string; v: Record<string, number> }[],
  field: string,
  from: Date,
  to: Date,
): Series {
  const raw = readings
    .map((r) => ({ at: Date.parse(r.t), value: r.v[field] }))
    .filter((r) => typeof r.value === 'number' && r.at >= from.getTime() && r.at <= to.getTime())
    .sort((a, b) => a.at - b.at);
  if (raw.length === 0) return series;
  const first = raw[0].at / 1000;
  // A window that ends after the first raw reading already counts it: drop it, or its readings
  // would be drawn (and counted) twice.
  const keep = series.times.findIndex((t, i) => (series.ends?.[i] ?? t) > first);
  const cut = keep < 0 ? series.times.length : keep;
  const values = raw.map((r) => r.value);
  return {
    times: [...series.times.slice(0, cut), ...raw.map((r) => r.at / 1000)],
    mean: [...series.mean.slice(0, cut), ...values],
    min: [...series.min.slice(0, cut), ...values],
    max: [...series.max.slice(0, cut), ...values],
    counts: [...series.counts.slice(0, cut), ...raw.map(() => 1)],
    latest: Math.max(series.latest, raw[raw.length - 1].at),
    raw: raw.length,
    ends: [...(series.ends ?? series.times).slice(0, cut), ...raw.map((r) => r.at / 1000)],
  };
}

export class TelemetryChart {
  private plot: uPlot | null = null;

  constructor(
    private readonly root: HTMLElement,
    private readonly label: string,
  ) {}

  get pointCount(): number {
    return this.plot?.data[0].length ?? 0;
  }

  /** `level`: a horizontal line (a rule's threshold), drawn when the chart is first drawn with one. */
  draw(series: Series, from: Date, to: Date, level?: number): void {
    const data: uPlot.AlignedData = [series.times, series.max, series.min, series.mean];
    const withLevel = this.plot ? this.plot.series.length > 4 : level !== undefined;
    if (withLevel) data.push(series.times.map(() => level ?? null));
    const scales = { x: { time: true, min: from.getTime() / 1000, max: to.getTime() / 1000 } };
    if (this.plot) {
      this.plot.batch(() => {
        this.plot?.setData(data, false);
        this.plot?.setScale('x', scales.x);
      });
    } else {
      this.plot = new uPlot(
        {
          width: Math.max(320, this.root.clientWidth || 800),
          height: 260,
          scales,
          series: [
            {},
            { label: 'max', stroke: '#9bb6d6', width: 1 },
            { label: 'min', stroke: '#9bb6d6', width: 1 },
            { label: this.label, stroke: '#1f5fa8', width: 2 },
            ...(withLevel ? [{ label: 'threshold', stroke: '#b3261e', width: 1, dash: [6, 4] }] : []),
          ],
          bands: [{ series: [1, 2], fill: 'rgba(31,95,168,0.12)' }],
        },
        data,
        this.root,
      );
    }
    if (!this.root.dataset.points) performance.mark('chart-rendered');
    this.root.dataset.points = String(series.times.length);
    this.root.dataset.messages = String(series.counts.reduce((sum, n) => sum + n, 0));
    this.root.dataset.last = String(series.times[series.times.length - 1] ?? '');
    this.root.dataset.latest = String(series.latest);
    this.root.dataset.raw = String(series.raw);
  }

  destroy(): void {
    this.plot?.destroy();
    this.plot = null;
  }
}

const SEVERITY_COLOURS: Record<string, string> = {
  critical: '#b3261e',
  error: '#e8710a',
  warning: '#c9a000',
  info: '#1f5fa8',
};

/** Counts over time, a stepped line per series (alerts raised per bucket, by severity). */
export function drawCounts(root: HTMLElement, times: number[], series: Map<string, number[]>): uPlot {
  const names = [...series.keys()];
  return new uPlot(
    {
      width: Math.max(320, root.clientWidth || 800),
      height: 180,
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      series: [
        {},
        ...names.map((name) => ({
          label: name,
          stroke: SEVERITY_COLOURS[name] ?? '#6b7785',
          width: 2,
          points: { show: false },
          paths: uPlot.paths.stepped?.({ align: 1 }),
        })),
      ],
    },
    [times, ...names.map((name) => series.get(name) ?? [])],
    root,
  );
}
