import { Alert } from '../api';
import { App, errorText, groupMembers } from '../app';
import { download, toCsv } from '../csv';
import { ago, h, replace } from '../dom';

/** Alerts, filtered by state, severity, rule and device (the filter lives in the URL). */
export async function alerts(app: App, root: HTMLElement, query: URLSearchParams): Promise<void> {
  const state = select('state', ['active', 'all'], query.get('state') ?? 'active');
  const review = select('review', ['', 'open', 'acknowledged', 'closed'], query.get('review') ?? '');
  const severity = select('severity', ['', 'critical', 'error', 'warning', 'info'], query.get('severity') ?? '');
  const rule = h('input', { placeholder: 'rule id', value: query.get('ruleId') ?? '', 'data-test': 'rule-filter' }) as HTMLInputElement;
  const device = h('input', { placeholder: 'device id', value: query.get('deviceId') ?? '', 'data-test': 'device-filter' }) as HTMLInputElement;
  const list = h('div', { 'data-test': 'alert-list' }, 'Loading…');
  const apply = (event: Event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (state.value !== 'active') next.set('state', state.value);
    if (review.value) next.set('review', review.value);
    if (severity.value) next.set('severity', severity.value);
    if (rule.value.trim()) next.set('ruleId', rule.value.trim());
    if (device.value.trim()) next.set('deviceId', device.value.trim());
    location.hash = `#/alerts?${next.toString()}`;
  };
  replace(
    root,
    h('h1', {}, 'Alerts'),
    h('form', { class: 'inline', onsubmit: apply }, state, review, severity, rule, device, h('button', { type: 'submit' }, 'Filter')),
    list,
  );
  if (!app.rights.serviceConnect) {
    replace(list, h('p', { class: 'muted' }, 'Reading alerts needs ServiceConnect.'));
    return;
  }
  const act = async (alert: Alert, action: 'acknowledge' | 'close') => {
    try {
      await app.api.reviewAlert(alert, action);
      await load();
    } catch (error) {
      replace(list, h('p', { class: 'error' }, errorText(error)));
    }
  };
  const load = async () => {
    try {
      const [found, members] = await Promise.all([
        app.api.alerts({
          active: state.value === 'active' ? true : undefined,
          state: review.value || undefined,
          ruleId: rule.value.trim() || undefined,
          deviceId: device.value.trim() || undefined,
        }),
        app.rights.registryRead ? groupMembers(app) : Promise.resolve(null),
      ]);
      const shown = found
        .filter((a) => !members || members.has(a.deviceId))
        .filter((a) => !severity.value || a.severity === severity.value)
        .sort((a, b) => String(b.raisedAt ?? '').localeCompare(String(a.raisedAt ?? '')));
      replace(list, table(shown, app.rights.serviceConnect ? act : null));
    } catch (error) {
      replace(list, h('p', { class: 'error' }, errorText(error)));
    }
  };
  await load();
  app.every(5, load);
}

function select(name: string, options: string[], value: string): HTMLSelectElement {
  return h(
    'select',
    { name, 'data-test': `${name}-filter` },
    ...options.map((o) => h('option', { value: o, selected: o === value }, o || `any ${name}`)),
  ) as HTMLSelectElement;
}

type Act = (alert: Alert, action: 'acknowledge' | 'close') => Promise<void>;

const COLUMNS = ['ruleId', 'deviceId', 'severity', 'active', 'state', 'field', 'lastValue', 'expectedLow', 'expectedHigh', 'raisedAt', 'clearedAt'];

function table(shown: Alert[], act: Act | null): HTMLElement {
  const exportCsv = () => download('alerts.csv', toCsv(COLUMNS, shown.map((a) => COLUMNS.map((c) => a[c]))));
  return h(
    'div',
    {},
    h('button', { class: 'link', onclick: exportCsv }, 'Export as CSV'),
    shown.length === 0
      ? h('p', { class: 'muted' }, 'No alerts match.')
      : h(
          'table',
          { class: 'list' },
          h('tr', {}, ...['Rule', 'Device', 'Severity', 'Condition', 'Review', 'Field', 'Last value', 'Normal band', 'Raised', ''].map((c) => h('th', {}, c))),
          ...shown.map((a) =>
            h(
              'tr',
              { 'data-alert': a.alertId ?? `${a.ruleId}/${a.deviceId}`, class: a.active ? 'active' : '' },
              h('td', {}, h('a', { href: `#/alerts?ruleId=${encodeURIComponent(a.ruleId)}&state=all` }, a.ruleId)),
              h('td', {}, h('a', { href: `#/devices/${encodeURIComponent(a.deviceId)}` }, a.deviceId)),
              h('td', {}, a.severity ?? ''),
              h('td', {}, a.active ? 'active' : 'cleared'),
              h('td', { 'data-test': 'review-state', title: a.review ? `${a.review.by}, ${a.review.at}` : '' }, a.state ?? 'open'),
              h('td', {}, a.field ?? ''),
              h('td', { class: 'num' }, format(a.lastValue)),
              h('td', {}, a.expectedLow !== undefined ? `${format(a.expectedLow)} – ${format(a.expectedHigh)}` : ''),
              h('td', { title: a.raisedAt ?? '' }, ago(a.raisedAt)),
              h(
                'td',
                {},
                act && a.state === 'open'
                  ? h('button', { 'data-test': 'acknowledge', onclick: () => void act(a, 'acknowledge') }, 'Acknowledge')
                  : null,
                act && a.state !== 'closed'
                  ? h('button', { 'data-test': 'close', onclick: () => void act(a, 'close') }, 'Close')
                  : null,
              ),
            ),
          ),
        ),
  );
}

function format(value: unknown): string {
  return typeof value === 'number' ? value.toFixed(2) : '';
}
