import { Alert } from '../api';
import { App, errorText } from '../app';
import { download, toCsv } from '../csv';
import { h, replace } from '../dom';

const SEVERITIES = ['critical', 'error', 'warning', 'info'];

/** Device counts, open alerts by severity, and the rules and devices that alert most. */
export async function overview(app: App, root: HTMLElement): Promise<void> {
  const counts = h('section', { class: 'cards', 'data-test': 'counts' }, 'Loading…');
  const alerts = h('section', { class: 'panels' });
  replace(root, h('h1', {}, 'Overview'), counts, alerts);

  const refresh = async () => {
    try {
      const [statistics, active] = await Promise.all([
        app.rights.registryRead ? app.api.statistics() : Promise.resolve(null),
        app.rights.serviceConnect ? app.api.alerts({ active: true }) : Promise.resolve(null),
      ]);
      replace(
        counts,
        statistics && card('Devices', statistics.totalDeviceCount, 'total'),
        statistics && card('Enabled', statistics.enabledDeviceCount, 'enabled'),
        statistics && card('Disabled', statistics.disabledDeviceCount, 'disabled'),
        active && card('Open alerts', active.length, 'open-alerts'),
      );
      replace(alerts, ...(active ? alertPanels(active) : [h('p', {}, 'This policy cannot read alerts.')]));
    } catch (error) {
      replace(counts, h('p', { class: 'error' }, errorText(error)));
    }
  };
  await refresh();
  // Time to first render, read by the browser tests (ms since the navigation started).
  performance.mark('overview-rendered');
  app.every(5, refresh);
}

function card(label: string, value: number, test: string): HTMLElement {
  return h('div', { class: 'card' }, h('div', { class: 'value', 'data-test': test }, value), label);
}

function alertPanels(active: Alert[]): HTMLElement[] {
  const bySeverity = tally(active, (a) => a.severity ?? 'none');
  const byRule = tally(active, (a) => a.ruleId);
  const byDevice = tally(active, (a) => a.deviceId);
  const severities = [...SEVERITIES, ...[...bySeverity.keys()].filter((s) => !SEVERITIES.includes(s))];
  return [
    panel(
      'Open alerts by severity',
      severities.map((s) => [s, bySeverity.get(s) ?? 0] as [string, number]),
      'severity',
    ),
    panel('Most alerting rules', top(byRule), 'rule', (rule) => `#/alerts?ruleId=${encodeURIComponent(rule)}`),
    panel('Most alerting devices', top(byDevice), 'device', (id) => `#/devices/${encodeURIComponent(id)}`),
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
  link?: (name: string) => string,
): HTMLElement {
  const exportCsv = () =>
    download(`${column}-alerts.csv`, toCsv([column, 'openAlerts'], rows.map(([n, c]) => [n, c])));
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
