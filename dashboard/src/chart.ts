// A telemetry chart: the window mean as a line inside its min/max band (uPlot).

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

import { WindowPoint } from './api';

export interface Series {
  times: number[];
  mean: (number | null)[];
  min: (number | null)[];
  max: (number | null)[];
  /** Readings per window: the chart follows new data even within a window. */
  counts: number[];
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

  draw(series: Series, from: Date, to: Date): void {
    const data: uPlot.AlignedData = [series.times, series.max, series.min, series.mean];
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
  }

  destroy(): void {
    this.plot?.destroy();
    this.plot = null;
  }
}
