import type uPlot from 'uplot';

import { Alert } from '../api';
import { App, errorText, groupMembers } from '../app';
import { drawCounts } from '../chart';
import { condition } from '../group';
import { download, toCsv } from '../csv';
import { h, replace } from '../dom';
import { raisesBy, raisesOverTime } from '../history';
import { interval } from '../range';

const SEVERITIES = ['critical', 'error', 'warning', 'info'];

interface Counts {
  total: number;
  enabled: number;
  disabled: number;
  /** Active within the hub's connected window (5 minutes unless configured). */
  connected: number;
}

/** The fleet's counts from the registry's statistics, or a group's from one GROUP BY query. */
async function deviceCounts(app: App): Promise<Counts | null> {
  if (!app.rights.registryRead) return null;
  if (!app.group) {
    const [statistics, connected] = await Promise.all([app.api.statistics(), app.api.connectedCount()]);
    return {
      total: statistics.totalDeviceCount,
      enabled: statistics.enabledDeviceCount,
      disabled: statistics.disabledDeviceCount,
      connected,
    };
  }
  const rows = await app.api.queryAll<{ status?: string; connectionState?: string; devices: number }>(
    `SELECT status, connectionState, COUNT() AS devices FROM devices WHERE ${condition(app.group) ?? 'true'} GROUP BY status, connectionState`,
  );
  const sum = (keep: (r: (typeof rows)[number]) => boolean) => rows.filter(keep).reduce((n, r) => n + r.devices, 0);
  return {
    total: sum(() => true),
    enabled: sum((r) => r.status === 'enabled'),
    disabled: sum((r) => r.status === 'disabled'),
    connected: sum((r) => r.connectionState === 'Connected'),
  };
}

/** Device counts (connected and silent among them), open alerts by severity, and the rules and
 * devices that alert most; all of the chosen group when there is one. */
export async function overview(app: App, root: HTMLElement): Promise<void> {
  const counts = h('section', { class: 'cards', 'data-test': 'counts' }, 'Loading…');
  const alerts = h('section', { class: 'panels' });
  const history = h('section', { class: 'panel', 'data-test': 'alert-history' });
  const title = app.group ? `Overview: ${app.group.path} = ${String(app.group.value)}` : 'Overview';
  replace(root, h('h1', {}, title), counts, history, alerts);
  let historyChart: uPlot | null = null;

  const refresh = async () => {
    try {
      const [statistics, all, members] = await Promise.all([
        deviceCounts(app),
        app.rights.serviceConnect ? app.api.alerts({}) : Promise.resolve(null),
        app.rights.serviceConnect ? groupMembers(app) : Promise.resolve(null),
      ]);
      const mine = all && (members ? all.filter((a) => members.has(a.deviceId)) : all);
      const active = mine && mine.filter((a) => a.active);
      if (mine) {
        historyChart?.destroy();
        historyChart = alertHistory(history, mine, app);
      }
      replace(
        counts,
        statistics && card('Devices', statistics.total, 'total'),
        statistics && card('Enabled', statistics.enabled, 'enabled'),
        statistics && card('Disabled', statistics.disabled, 'disabled'),
        statistics && card('Connected', statistics.connected, 'connected'),
        statistics && card('Silent', Math.max(0, statistics.enabled - statistics.connected), 'silent'),
        active && card('Open alerts', active.length, 'open-alerts'),
      );
      replace(alerts, ...(mine && active ? alertPanels(active, mine, app) : [h('p', {}, 'This policy cannot read alerts.')]));
    } catch (error) {
      replace(counts, h('p', { class: 'error' }, errorText(error)));
    }
  };
  await refresh();
  // Time to first render, read by the browser tests (ms since the navigation started).
  performance.mark('overview-rendered');
  app.every(5, refresh);
}

/** Alerts raised over the chosen range, per bucket and severity (from each alert's recent raises). */
function alertHistory(root: HTMLElement, alerts: Alert[], app: App): uPlot {
  const { from, to } = interval(app.range);
  const histogram = raisesOverTime(alerts, from, to, SEVERITIES);
  const minutes = histogram.bucketSeconds / 60;
  const exportCsv = () => {
    const names = [...histogram.bySeverity.keys()];
    download(
      'alerts-over-time.csv',
      toCsv(
        ['bucketStart', ...names],
        histogram.times.map((t, i) => [new Date(t * 1000).toISOString(), ...names.map((n) => histogram.bySeverity.get(n)?.[i] ?? 0)]),
      ),
    );
  };
  const plot = h('div', { class: 'chart', 'data-test': 'alert-history-chart', 'data-raises': histogram.total });
  replace(
    root,
    h('h2', {}, 'Alerts raised over time ', h('button', { class: 'link', onclick: exportCsv }, 'CSV')),
    plot,
    h('p', { class: 'muted' }, `${histogram.total} raises in the range, per ${minutes < 60 ? `${minutes} min` : `${minutes / 60} h`}`),
  );
  return drawCounts(plot, histogram.times, histogram.bySeverity);
}

function card(label: string, value: number, test: string): HTMLElement {
  return h('div', { class: 'card' }, h('div', { class: 'value', 'data-test': test }, value), label);
}

/** Open alerts by severity (now), and the rules and devices that raised most in the range. */
function alertPanels(active: Alert[], all: Alert[], app: App): HTMLElement[] {
  const bySeverity = tally(active, (a) => a.severity ?? 'none');
  const { from, to } = interval(app.range);
  const { byRule, byDevice } = raisesBy(all, from, to);
  const severities = [...SEVERITIES, ...[...bySeverity.keys()].filter((s) => !SEVERITIES.includes(s))];
  return [
    panel(
      'Open alerts by severity',
      severities.map((s) => [s, bySeverity.get(s) ?? 0] as [string, number]),
      'severity',
      'openAlerts',
    ),
    panel('Most alerting rules (raises in the range)', top(byRule), 'rule', 'raises', (rule) => `#/rules/${encodeURIComponent(rule)}`),
    panel('Most alerting devices (raises in the range)', top(byDevice), 'device', 'raises', (id) => `#/devices/${encodeURIComponent(id)}`),
  ];
}

function tally<T>(items: T[], key: (item: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return counts;
}

function top(counts: Map<string, number>, n = 10): [string, number][] {
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, n);
}

function panel(
  title: string,
  rows: [string, number][],
  column: string,
  counted: string,
  link?: (name: string) => string,
): HTMLElement {
  const exportCsv = () => download(`${column}-alerts.csv`, toCsv([column, counted], rows.map(([n, c]) => [n, c])));
  return h(
    'div',
    { class: 'panel' },
    h('h2', {}, title, ' ', h('button', { class: 'link', onclick: exportCsv }, 'CSV')),
    rows.length === 0
      ? h('p', { class: 'muted' }, 'None')
      : h(
          'table',
          {},
          ...rows.map(([name, count]) =>
            h('tr', {}, h('td', {}, link ? h('a', { href: link(name) }, name) : name), h('td', { class: 'num' }, count)),
          ),
        ),
  );
}
