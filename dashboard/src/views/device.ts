import { Device, Twin } from '../api';
import { App, errorText } from '../app';
import { TelemetryChart, toSeries, withRecent } from '../chart';
import { download, toCsv } from '../csv';
import { ago, h, replace } from '../dom';
import { MessageLog } from '../messages';
import { interval, windowFor } from '../range';

/** One device: its live telemetry, twin, C2D queue, and what an operator does to it. */
export async function devicePage(app: App, root: HTMLElement, id: string): Promise<void> {
  const summary = h('section', { class: 'panel', 'data-test': 'device-summary' }, 'Loading…');
  const chartPanel = h('section', { class: 'panel' });
  const messagesPanel = h('section', { class: 'panel', 'data-test': 'recent-messages' });
  const twinPanel = h('section', { class: 'panel', 'data-test': 'twin' });
  const actions = h('section', { class: 'panel', 'data-test': 'actions' });
  const status = h('p', { class: 'status', 'data-test': 'status', role: 'status' });
  replace(root, h('h1', {}, id), status, summary, chartPanel, messagesPanel, twinPanel, actions);

  const say = (text: string, error = false) => {
    status.textContent = text;
    status.className = error ? 'status error' : 'status';
  };
  // Twins are ServiceConnect's (as in Azure); a registry-only policy sees the identity alone.
  const readTwin = (): Promise<Twin> =>
    app.rights.serviceConnect ? app.api.twin(id) : Promise.resolve(noTwin(id));
  let device: Device;
  let twin: Twin;
  try {
    [device, twin] = await Promise.all([app.api.device(id), readTwin()]);
  } catch (error) {
    replace(summary, h('p', { class: 'error' }, errorText(error)));
    return;
  }

  const drawSummary = () =>
    replace(
      summary,
      h(
        'dl',
        {},
        h('dt', {}, 'Status'),
        h('dd', { 'data-test': 'device-status' }, device.status),
        h('dt', {}, 'Last activity'),
        h('dd', { title: device.lastActivityTime ?? '' }, ago(device.lastActivityTime)),
        h('dt', {}, 'Messages waiting (C2D queue)'),
        h('dd', { 'data-test': 'c2d-count' }, device.cloudToDeviceMessageCount ?? 0),
        h('dt', {}, 'Type / model'),
        h('dd', {}, `${String(twin.properties.reported.type ?? '')} ${String(twin.properties.reported.model ?? '')}`),
        h('dt', {}, 'Firmware'),
        h('dd', { 'data-test': 'firmware' }, firmware(twin)),
      ),
    );
  drawSummary();
  if (app.rights.serviceConnect) {
    replace(twinPanel, ...twinView(twin));
    await chartView(app, chartPanel, id, twin);
    await messagesView(app, messagesPanel, id);
  } else {
    replace(twinPanel, h('p', { class: 'muted' }, 'Its twin and telemetry need a policy with ServiceConnect.'));
  }

  const refresh = async () => {
    try {
      [device, twin] = await Promise.all([app.api.device(id), readTwin()]);
      drawSummary();
      if (app.rights.serviceConnect) replace(twinPanel, ...twinView(twin));
    } catch (error) {
      say(errorText(error), true);
    }
  };
  app.every(5, refresh);
  replace(actions, h('h2', {}, 'Actions'), ...actionViews(app, id, () => device, () => twin, say, refresh));
}

function noTwin(id: string): Twin {
  return { deviceId: id, properties: { desired: {}, reported: {} } };
}

function firmware(twin: Twin): string {
  const value = twin.properties.reported.firmware;
  if (value && typeof value === 'object') {
    const { version, status } = value as { version?: string; status?: string };
    return [version, status && status !== 'current' ? `(${status})` : ''].filter(Boolean).join(' ');
  }
  return typeof value === 'string' ? value : '';
}

function numericFields(twin: Twin): string[] {
  const telemetry = twin.properties.reported.telemetry;
  if (telemetry && typeof telemetry === 'object') return Object.keys(telemetry);
  return [];
}

async function chartView(app: App, root: HTMLElement, id: string, twin: Twin): Promise<void> {
  const fields = numericFields(twin);
  const field = h('select', { 'data-test': 'field' }, ...fields.map((f) => h('option', { value: f }, f))) as HTMLSelectElement;
  const free = h('input', { placeholder: 'field', value: fields[0] ?? '' }) as HTMLInputElement;
  const picker = fields.length > 0 ? field : free;
  const plotRoot = h('div', { class: 'chart', 'data-test': 'chart' });
  const note = h('p', { class: 'muted' });
  let points: ReturnType<typeof toSeries> | null = null;
  let chart = new TelemetryChart(plotRoot, picker.value);
  const exportCsv = () => {
    if (!points) return;
    const series = points;
    download(
      `${id}-${picker.value}.csv`,
      toCsv(
        ['windowStart', 'min', 'mean', 'max'],
        series.times.map((t, i) => [new Date(t * 1000).toISOString(), series.min[i], series.mean[i], series.max[i]]),
      ),
    );
  };
  replace(
    root,
    h('h2', {}, 'Telemetry ', picker, ' ', h('button', { class: 'link', onclick: exportCsv }, 'CSV')),
    plotRoot,
    note,
  );
  const load = async () => {
    const { from, to } = interval(app.range);
    const window = windowFor(app.range.seconds);
    try {
      const [telemetry, state] = await Promise.all([
        app.api.telemetry(id, picker.value, window, from, to),
        app.api.deviceState(id),
      ]);
      points = withRecent(toSeries(telemetry.points), state?.recentReadings ?? [], picker.value, from, to);
      chart.draw(points, from, to);
      const raw = points.raw > 0 ? `, the latest ${points.raw} as raw readings` : '';
      note.textContent = `${points.times.length} points, ${window} windows (mean with min/max band)${raw}`;
    } catch (error) {
      note.textContent = errorText(error);
    }
  };
  picker.addEventListener('change', () => {
    chart.destroy();
    chart = new TelemetryChart(plotRoot, picker.value);
    void load();
  });
  await load();
  if (interval(app.range).live) app.every(5, load);
}

/** The device's latest message and each one after it while the page is open. */
async function messagesView(app: App, root: HTMLElement, id: string): Promise<void> {
  const log = new MessageLog();
  const draw = () => {
    const messages = log.all;
    const fields = [...new Set(messages.flatMap((m) => Object.keys(m.values)))].sort();
    const exportCsv = () =>
      download(`${id}-messages.csv`, toCsv(['time', 'messageId', ...fields], messages.map((m) => [m.time, m.id, ...fields.map((f) => m.values[f])])));
    replace(
      root,
      h('h2', {}, 'Recent messages ', h('button', { class: 'link', onclick: exportCsv }, 'CSV')),
      h('p', { class: 'muted' }, 'The latest message the hub processed, then each one after it while this page is open (a count says when several arrived between two looks).'),
      messages.length === 0
        ? h('p', { class: 'muted' }, 'No message processed yet.')
        : h(
            'table',
            { class: 'list' },
            h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Message id'), ...fields.map((f) => h('th', {}, f)), h('th', {}, '')),
            ...messages.map((m) =>
              h(
                'tr',
                { 'data-message': m.id },
                h('td', { title: m.time }, new Date(m.time).toLocaleTimeString()),
                h('td', {}, m.id),
                ...fields.map((f) => h('td', { class: 'num' }, m.values[f] ?? '')),
                h('td', { class: 'muted' }, m.since > 1 ? `+${String(m.since - 1)} not shown` : ''),
              ),
            ),
          ),
    );
  };
  const load = async () => {
    try {
      if (log.add(await app.api.deviceState(id)) || log.all.length === 0) draw();
    } catch (error) {
      replace(root, h('p', { class: 'error' }, errorText(error)));
    }
  };
  await load();
  app.every(3, load);
}

function twinView(twin: Twin): HTMLElement[] {
  const desired = { ...twin.properties.desired };
  delete desired.$metadata;
  delete desired.$version;
  const reported = twin.properties.reported;
  const pending = Object.keys(desired).filter(
    (key) => JSON.stringify(desired[key]) !== JSON.stringify(reported[key]),
  );
  const block = (title: string, value: unknown, test: string) =>
    h('div', {}, h('h3', {}, title), h('pre', { 'data-test': test }, JSON.stringify(value ?? {}, null, 2)));
  return [
    h('h2', {}, 'Twin'),
    pending.length > 0
      ? h('p', { class: 'warning', 'data-test': 'pending' }, `Desired, not yet reported: ${pending.join(', ')}`)
      : h('p', { class: 'muted', 'data-test': 'pending' }, 'The device reports every desired property.'),
    h(
      'div',
      { class: 'columns' },
      block('Tags', twin.tags, 'tags'),
      block('Desired', desired, 'desired'),
      block('Reported', withoutMetadata(reported), 'reported'),
    ),
  ];
}

function withoutMetadata(properties: Record<string, unknown>): Record<string, unknown> {
  const copy = { ...properties };
  delete copy.$metadata;
  delete copy.$version;
  return copy;
}

function actionViews(
  app: App,
  id: string,
  device: () => Device,
  twin: () => Twin,
  say: (text: string, error?: boolean) => void,
  refresh: () => Promise<void>,
): HTMLElement[] {
  const run = (label: string, task: () => Promise<void>) => async (event: Event) => {
    event.preventDefault();
    try {
      await task();
      say(`${label}: done`);
      await refresh();
    } catch (error) {
      say(`${label}: ${errorText(error)}`, true);
    }
  };
  const views: HTMLElement[] = [];
  if (app.rights.serviceConnect) {
    const supported = twin().properties.reported.supportedCommands;
    const names = Array.isArray(supported) ? supported.map(String) : [];
    const command = h('select', { 'data-test': 'command' }, ...names.map((n) => h('option', { value: n }, n))) as HTMLSelectElement;
    const payload = h('input', { placeholder: 'payload (JSON, optional)', 'data-test': 'command-payload' }) as HTMLInputElement;
    views.push(
      h(
        'form',
        {
          class: 'inline',
          onsubmit: run('Command sent', async () => {
            const body = payload.value.trim() ? (JSON.parse(payload.value) as unknown) : null;
            await app.api.sendCommand(id, command.value, body);
          }),
        },
        h('label', {}, 'Command ', command),
        payload,
        h('button', { type: 'submit', 'data-test': 'send-command' }, 'Send'),
      ),
    );
  }
  if (app.rights.serviceConnect) {
    const name = h('input', { placeholder: 'desired property', 'data-test': 'desired-name' }) as HTMLInputElement;
    const value = h('input', { placeholder: 'value (JSON)', 'data-test': 'desired-value' }) as HTMLInputElement;
    views.push(
      h(
        'form',
        {
          class: 'inline',
          onsubmit: run('Desired property set', async () => {
            await app.api.patchDesired(id, { [name.value.trim()]: parseValue(value.value) });
          }),
        },
        name,
        value,
        h('button', { type: 'submit', 'data-test': 'set-desired' }, 'Set desired'),
      ),
    );
  }
  if (app.rights.registryWrite) {
    views.push(
      h(
        'div',
        { class: 'inline danger-zone' },
        h(
          'button',
          {
            'data-test': 'toggle-status',
            onclick: run('Status changed', async () => {
              const current = device();
              await app.api.updateDevice({ ...current, status: current.status === 'enabled' ? 'disabled' : 'enabled' });
            }),
          },
          device().status === 'enabled' ? 'Disable' : 'Enable',
        ),
        h(
          'button',
          {
            'data-test': 'regenerate-key',
            onclick: run('Primary key regenerated', async () => {
              const current = device();
              const keys = current.authentication?.symmetricKey ?? {};
              await app.api.updateDevice({
                ...current,
                authentication: { ...current.authentication, symmetricKey: { ...keys, primaryKey: randomKey() } },
              });
            }),
          },
          'Regenerate primary key',
        ),
        h(
          'button',
          {
            class: 'danger',
            'data-test': 'delete-device',
            onclick: run('Deleted', async () => {
              if (!window.confirm(`Delete ${id}? Its queue and twin go with it.`)) throw new Error('cancelled');
              await app.api.deleteDevice(id);
              location.hash = '#/devices';
            }),
          },
          'Delete',
        ),
      ),
    );
  }
  if (views.length === 0) views.push(h('p', { class: 'muted' }, 'This policy can only look.'));
  return views;
}

/** A typed value as JSON when it parses (numbers, booleans, objects), else as a string. */
export function parseValue(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function randomKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes));
}
