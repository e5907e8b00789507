import { Alert } from '../api';
import { App, errorText } from '../app';
import { TelemetryChart, toSeries } from '../chart';
import { download, toCsv } from '../csv';
import { ago, h, replace } from '../dom';
import { DIRECTIONS, OPERATORS, Rule, RuleForm, SEVERITIES, describeCondition, describeDevices, emptyForm, formFromRule, ruleFromForm } from '../rule';

/** The rules: what each watches and does, enabled or not, and how many alerts it has open. */
export async function rules(app: App, root: HTMLElement): Promise<void> {
  const list = h('div', { 'data-test': 'rule-list' }, 'Loading…');
  const status = h('p', { class: 'status', role: 'status', 'data-test': 'status' });
  replace(
    root,
    h('h1', {}, 'Rules'),
    app.rights.serviceConnect ? h('p', {}, h('a', { href: '#/rules/new', 'data-test': 'new-rule' }, 'New rule')) : null,
    status,
    list,
  );
  if (!app.rights.serviceConnect) {
    replace(list, h('p', { class: 'muted' }, 'Rules need a policy with ServiceConnect.'));
    return;
  }
  const toggle = async (rule: Rule) => {
    try {
      await app.api.saveRule({ ...rule, enabled: !rule.enabled }, rule.etag);
      status.textContent = `${rule.id} ${rule.enabled ? 'disabled' : 'enabled'}`;
      await load();
    } catch (error) {
      status.textContent = errorText(error);
    }
  };
  const load = async () => {
    try {
      const [all, active] = await Promise.all([app.api.rules(), app.api.alerts({ active: true })]);
      replace(list, ruleTable(all.sort((a, b) => a.id.localeCompare(b.id)), active, toggle));
    } catch (error) {
      replace(list, h('p', { class: 'error' }, errorText(error)));
    }
  };
  await load();
  app.every(10, load);
}

const COLUMNS = ['id', 'description', 'enabled', 'devices', 'condition', 'severity', 'command', 'cooldownSeconds', 'openAlerts'];

function ruleTable(all: Rule[], active: Alert[], toggle: (rule: Rule) => Promise<void>): HTMLElement {
  const open = (id: string) => active.filter((a) => a.ruleId === id).length;
  const row = (r: Rule) => [
    r.id,
    r.description ?? '',
    r.enabled,
    describeDevices(r),
    describeCondition(r),
    r.actions.alert?.severity ?? '',
    r.actions.command?.body ?? '',
    r.cooldownSeconds ?? 300,
    open(r.id),
  ];
  const exportCsv = () => download('rules.csv', toCsv(COLUMNS, all.map(row)));
  return h(
    'div',
    {},
    h('button', { class: 'link', onclick: exportCsv }, 'Export as CSV'),
    all.length === 0
      ? h('p', { class: 'muted' }, 'No rules yet.')
      : h(
          'table',
          { class: 'list' },
          h('tr', {}, ...['Rule', 'Description', 'Devices', 'Condition', 'Alert', 'Command', 'Open alerts', 'Enabled'].map((c) => h('th', {}, c))),
          ...all.map((r) =>
            h(
              'tr',
              { 'data-rule': r.id },
              h('td', {}, h('a', { href: `#/rules/${encodeURIComponent(r.id)}` }, r.id)),
              h('td', {}, r.description ?? ''),
              h('td', {}, describeDevices(r)),
              h('td', {}, describeCondition(r)),
              h('td', {}, r.actions.alert?.severity ?? '—'),
              h('td', {}, r.actions.command?.body ?? '—'),
              h('td', { class: 'num' }, h('a', { href: `#/alerts?ruleId=${encodeURIComponent(r.id)}` }, open(r.id))),
              h(
                'td',
                {},
                h('input', {
                  type: 'checkbox',
                  checked: r.enabled,
                  'data-test': 'rule-enabled',
                  title: r.enabled ? 'Disable' : 'Enable',
                  onchange: () => void toggle(r),
                }),
              ),
            ),
          ),
        ),
  );
}

/** A rule's page: its editor, its alerts, and the telemetry around a chosen alert. `id` is
 * `new` for a rule being created. */
export async function rulePage(app: App, root: HTMLElement, id: string, query: URLSearchParams): Promise<void> {
  const creating = id === 'new';
  const status = h('p', { class: 'status', role: 'status', 'data-test': 'status' });
  const editor = h('section', { class: 'panel', 'data-test': 'rule-editor' });
  const alertsPanel = h('section', { class: 'panel', 'data-test': 'rule-alerts' });
  const around = h('section', { class: 'panel', 'data-test': 'around' });
  replace(root, h('h1', {}, creating ? 'New rule' : `Rule ${id}`), status, editor, alertsPanel, around);
  if (!app.rights.serviceConnect) {
    replace(editor, h('p', { class: 'muted' }, 'Rules need a policy with ServiceConnect.'));
    return;
  }
  const say = (text: string, error = false) => {
    status.textContent = text;
    status.className = error ? 'status error' : 'status';
  };
  let rule: Rule | undefined;
  try {
    rule = creating ? undefined : await app.api.rule(id);
  } catch (error) {
    say(errorText(error), true);
    return;
  }
  replace(editor, ...ruleEditor(app, rule, say));
  if (rule && query.has('saved')) say(`Saved ${rule.id}`);
  if (creating || !rule) return;
  const shown = rule;
  let chosen = query.get('deviceId');
  let chart: TelemetryChart | null = null;
  const loadAlerts = async () => {
    try {
      const found = (await app.api.alerts({ ruleId: shown.id })).sort((a, b) =>
        String(b.raisedAt ?? '').localeCompare(String(a.raisedAt ?? '')),
      );
      replace(alertsPanel, h('h2', {}, 'Its alerts'), alertList(found, shown.id, chosen));
      const alert = found.find((a) => a.deviceId === chosen) ?? found.find((a) => a.raisedAt);
      if (alert?.raisedAt) {
        chosen = alert.deviceId;
        chart?.destroy();
        chart = await aroundAlert(app, around, shown, alert);
      } else {
        replace(around, h('p', { class: 'muted' }, 'The rule has raised no alert yet.'));
      }
    } catch (error) {
      replace(alertsPanel, h('p', { class: 'error' }, errorText(error)));
    }
  };
  await loadAlerts();
  app.every(10, loadAlerts);
}

function alertList(found: Alert[], ruleId: string, chosen: string | null): HTMLElement {
  if (found.length === 0) return h('p', { class: 'muted' }, 'No alerts.');
  return h(
    'table',
    { class: 'list' },
    h('tr', {}, ...['Device', 'Condition', 'Review', 'Last value', 'Raised', 'Raises', ''].map((c) => h('th', {}, c))),
    ...found.map((a) =>
      h(
        'tr',
        { 'data-alert': `${a.ruleId}/${a.deviceId}`, class: a.active ? 'active' : '' },
        h('td', {}, h('a', { href: `#/devices/${encodeURIComponent(a.deviceId)}` }, a.deviceId)),
        h('td', {}, a.active ? 'active' : 'cleared'),
        h('td', {}, a.state ?? 'open'),
        h('td', { class: 'num' }, typeof a.lastValue === 'number' ? a.lastValue.toFixed(2) : ''),
        h('td', { title: a.raisedAt ?? '' }, ago(a.raisedAt)),
        h('td', { class: 'num' }, a.raiseCount ?? 0),
        h(
          'td',
          {},
          a.deviceId === chosen
            ? 'charted below'
            : h('a', { href: `#/rules/${encodeURIComponent(ruleId)}?deviceId=${encodeURIComponent(a.deviceId)}` }, 'Chart'),
        ),
      ),
    ),
  );
}

/** The rule's field on the alert's device from half an hour before the raise to a while after it
 * cleared (or now), one-minute windows, with the threshold or the band it was judged against. */
async function aroundAlert(app: App, root: HTMLElement, rule: Rule, alert: Alert): Promise<TelemetryChart> {
  const raised = Date.parse(alert.raisedAt ?? '');
  const cleared = alert.clearedAt && !alert.active ? Date.parse(alert.clearedAt) : Date.now();
  const from = new Date(raised - 30 * 60_000);
  const to = new Date(Math.min(Date.now(), Math.max(cleared, raised) + 10 * 60_000));
  const plot = h('div', { class: 'chart', 'data-test': 'around-chart' });
  const note = h('p', { class: 'muted' });
  replace(root, h('h2', {}, `${rule.condition.field} on ${alert.deviceId} around its alert`), plot, note);
  const chart = new TelemetryChart(plot, rule.condition.field);
  const telemetry = await app.api.telemetry(alert.deviceId, rule.condition.field, '1m', from, to);
  const series = toSeries(telemetry.points);
  const level = rule.condition.threshold ?? alert.expectedHigh;
  chart.draw(series, from, to, typeof level === 'number' ? level : undefined);
  note.textContent = `Raised ${new Date(raised).toLocaleString()} at ${String(alert.recentRaises?.at(-1)?.value ?? alert.lastValue ?? '')}; ${series.times.length} one-minute windows${typeof level === 'number' ? `; the line at ${String(level)} is the ${rule.condition.threshold !== undefined ? 'threshold' : 'upper edge of the normal band'}` : ''}.`;
  return chart;
}

function ruleEditor(app: App, rule: Rule | undefined, say: (text: string, error?: boolean) => void): HTMLElement[] {
  const form = rule ? formFromRule(rule) : emptyForm();
  const inputs = new Map<keyof RuleForm, HTMLInputElement | HTMLSelectElement>();
  const input = (name: keyof RuleForm, attributes: Record<string, string | boolean> = {}) => {
    const element = h('input', { name, value: String(form[name]), 'data-test': `rule-${name}`, ...attributes }) as HTMLInputElement;
    inputs.set(name, element);
    return element;
  };
  const select = (name: keyof RuleForm, options: string[], labels: Record<string, string> = {}) => {
    const element = h(
      'select',
      { name, 'data-test': `rule-${name}` },
      ...options.map((o) => h('option', { value: o, selected: o === form[name] }, labels[o] ?? o)),
    ) as HTMLSelectElement;
    inputs.set(name, element);
    return element;
  };
  const enabled = h('input', { type: 'checkbox', checked: form.enabled, 'data-test': 'rule-enabled' }) as HTMLInputElement;
  const kind = select('kind', ['threshold', 'learned'], { threshold: 'a fixed threshold', learned: 'above what is normal for each device (learned)' });
  const aggregation = select('aggregation', ['reading', 'windowMean'], { reading: 'each reading', windowMean: 'the window mean' });
  const devices = select('devices', ['all', 'ids', 'tags'], { all: 'all devices', ids: 'these device ids', tags: 'devices tagged' });
  const threshold = h('span', { class: 'inline' }, select('operator', OPERATORS), input('threshold', { placeholder: 'threshold', size: '8' }), ' on ', aggregation, input('window', { size: '4', title: 'window of the mean' }));
  const learned = h(
    'span',
    { class: 'inline' },
    select('direction', DIRECTIONS),
    ' normal, band of ',
    input('sensitivity', { size: '4' }),
    ' standard deviations, at least ',
    input('minDeviation', { size: '5' }),
    ' wide, after ',
    input('warmup', { size: '5' }),
    ' readings',
  );
  const selection = input('selection', { placeholder: 'd1, d2  or  site=dublin, floor=2', size: '40' });
  const sync = () => {
    threshold.hidden = kind.value !== 'threshold';
    learned.hidden = kind.value !== 'learned';
    selection.hidden = devices.value === 'all';
    (inputs.get('window') as HTMLInputElement).hidden = aggregation.value !== 'windowMean';
  };
  for (const element of [kind, devices, aggregation]) element.addEventListener('change', sync);
  sync();
  const values = (): RuleForm => {
    const read = (name: keyof RuleForm) => inputs.get(name)?.value ?? '';
    return { ...(Object.fromEntries([...inputs.keys()].map((k) => [k, read(k)])) as unknown as RuleForm), enabled: enabled.checked };
  };
  const save = async (event: Event) => {
    event.preventDefault();
    try {
      const saved = await app.api.saveRule(ruleFromForm(values(), rule), rule?.etag);
      say(`Saved ${saved.id}`);
      // A created rule's page takes over; it says it was saved.
      if (!rule) location.hash = `#/rules/${encodeURIComponent(saved.id)}?saved`;
      else rule = saved;
    } catch (error) {
      say(errorText(error), true);
    }
  };
  const remove = async () => {
    if (!rule) return;
    if (!window.confirm(`Delete rule ${rule.id}? Its alerts stay as they are.`)) return;
    try {
      await app.api.deleteRule(rule.id);
      location.hash = '#/rules';
    } catch (error) {
      say(errorText(error), true);
    }
  };
  const row = (label: string, ...content: (HTMLElement | string)[]) => h('div', { class: 'field' }, h('label', {}, label), h('span', { class: 'inline' }, ...content));
  const idInput = input('id', { placeholder: 'high-temperature', ...(rule ? { readonly: true } : {}) });
  return [
    h(
      'form',
      { class: 'rule-form', onsubmit: save },
      row('Id', idInput),
      row('Description', input('description', { size: '40' })),
      row('Enabled', enabled),
      row('Devices', devices, selection),
      row('Condition', input('field', { placeholder: 'field, e.g. temperature', size: '18' }), kind),
      row('', threshold, learned),
      row('Consecutive readings', input('consecutive', { size: '4' })),
      row('Alert severity', select('severity', ['', ...SEVERITIES], { '': 'no alert' })),
      row('Command to the device', input('command', { placeholder: 'body (empty: none)', size: '30' }), ' at most every ', input('cooldownSeconds', { size: '6' }), ' s'),
      h(
        'div',
        { class: 'inline' },
        h('button', { type: 'submit', 'data-test': 'save-rule' }, rule ? 'Save' : 'Create'),
        rule ? h('button', { type: 'button', class: 'danger', 'data-test': 'delete-rule', onclick: () => void remove() }, 'Delete') : null,
      ),
    ),
  ];
}
