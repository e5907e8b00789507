import { App, errorText, groupMembers } from '../app';
import { TelemetryChart, toSeries } from '../chart';
import { download, toCsv } from '../csv';
import { h, replace } from '../dom';
import { interval, windowFor } from '../range';

/** Points per group chart: 100 devices × 200 windows stay under the hub's 20,000. */
const GROUP_MAX_POINTS = 200;

/** Most devices charted without a group: beyond it, the page asks for a group. */
const FLEET_CHART_DEVICES = 500;

/** A field of the chosen group (or the first devices of the fleet), window by window, merged by
 * the hub a hundred devices per request. */
export async function groupTelemetry(app: App, root: HTMLElement, query: URLSearchParams): Promise<void> {
  const title = app.group ? `Telemetry: ${app.group.path} = ${String(app.group.value)}` : 'Telemetry of the fleet';
  const field = h('input', { value: query.get('field') ?? '', placeholder: 'field, e.g. temperature', 'data-test': 'group-field', list: 'fields' }) as HTMLInputElement;
  const fields = h('datalist', { id: 'fields' });
  const plot = h('div', { class: 'chart', 'data-test': 'group-chart' });
  const note = h('p', { class: 'muted', 'data-test': 'group-note' });
  const form = h('form', { class: 'inline' }, field, fields, h('button', { type: 'submit' }, 'Chart'));
  replace(root, h('h1', {}, title), form, plot, note);
  if (!app.rights.serviceConnect || !app.rights.registryRead) {
    replace(note, 'A group chart needs a policy with RegistryRead and ServiceConnect.');
    return;
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = `#/telemetry?field=${encodeURIComponent(field.value.trim())}`;
  });
  let members: string[];
  try {
    const group = await groupMembers(app);
    members = group
      ? [...group].sort()
      : (await app.api.queryAll<{ deviceId: string }>('SELECT deviceId FROM devices', FLEET_CHART_DEVICES)).map((r) => r.deviceId);
    const first = members[0] ? await app.api.twin(members[0]) : null;
    const known = first?.properties.reported.telemetry;
    if (known && typeof known === 'object') {
      replace(fields, ...Object.keys(known).map((f) => h('option', { value: f })));
      if (!field.value) field.value = Object.keys(known)[0] ?? '';
    }
  } catch (error) {
    replace(note, h('span', { class: 'error' }, errorText(error)));
    return;
  }
  if (members.length === 0 || !field.value) {
    note.textContent = members.length === 0 ? 'No devices in this group.' : 'Name a field to chart.';
    return;
  }
  const chart = new TelemetryChart(plot, `${field.value} (group)`);
  let series: ReturnType<typeof toSeries> | null = null;
  const exportCsv = () => {
    const s = series;
    if (!s) return;
    download(
      `group-${field.value}.csv`,
      toCsv(['windowStart', 'count', 'min', 'mean', 'max'], s.times.map((t, i) => [new Date(t * 1000).toISOString(), s.counts[i], s.min[i], s.mean[i], s.max[i]])),
    );
  };
  form.append(h('button', { type: 'button', class: 'link', onclick: exportCsv }, 'CSV'));
  const load = async () => {
    const { from, to } = interval(app.range);
    // A group reads every member's windows: fewer, larger windows keep that within what one
    // request of 100 devices may read (MAX_FLEET_WINDOWS on the hub).
    const window = windowFor(app.range.seconds, GROUP_MAX_POINTS);
    try {
      series = toSeries(await app.api.groupTelemetry(members, field.value, window, from, to));
      chart.draw(series, from, to);
      const capped = !app.group && members.length >= FLEET_CHART_DEVICES ? ` (the first ${FLEET_CHART_DEVICES}: choose a group to narrow)` : '';
      note.textContent = `${members.length} devices${capped}; ${series.times.length} points, ${window} windows (mean with min/max band)`;
    } catch (error) {
      note.textContent = errorText(error);
    }
  };
  await load();
  if (interval(app.range).live) app.every(10, load);
}
