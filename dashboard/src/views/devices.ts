import { Alert, FleetDevice, Page, Twin, fleetRow } from '../api';
import { App, errorText } from '../app';
import { condition } from '../group';
import { download, toCsv } from '../csv';
import { ago, h, replace } from '../dom';

const PAGE_SIZE = 50;

/** The fleet (or the chosen group), one page (one request) at a time, with each device's open
 * alerts; a search by id prefix runs over the whole fleet as a twin query. */
export async function devices(app: App, root: HTMLElement): Promise<void> {
  const table = h('div', { 'data-test': 'device-table' }, 'Loading…');
  const pager = h('div', { class: 'pager' });
  const search = h('input', { type: 'search', placeholder: 'Search all devices: id starts with', 'data-test': 'device-search' }) as HTMLInputElement;
  const filter = h('input', { type: 'search', placeholder: 'Filter this page by id, model or firmware' }) as HTMLInputElement;
  const create = app.rights.registryWrite ? createForm(app) : null;
  const title = app.group ? `Devices: ${app.group.path} = ${String(app.group.value)}` : 'Devices';
  const searchForm = h('form', { class: 'inline' }, search);
  replace(root, h('h1', {}, title), create, h('div', { class: 'toolbar' }, searchForm, filter, pager), table);

  // Continuation tokens of the pages seen so far, so "previous" needs no re-scan.
  const pages: (string | null)[] = [null];
  let index = 0;
  let rows: FleetDevice[] = [];
  let alerts = new Map<string, number>();
  let sort: keyof FleetDevice = 'deviceId';

  const draw = () => {
    const needle = filter.value.trim().toLowerCase();
    const shown = rows
      .filter((d) => !needle || [d.deviceId, d.model, d.type, d.firmware].some((v) => v?.toLowerCase().includes(needle)))
      .sort((a, b) => String(a[sort] ?? '').localeCompare(String(b[sort] ?? '')));
    const header = (label: string, key: keyof FleetDevice) =>
      h('th', { class: 'sortable', onclick: () => ((sort = key), draw()) }, label, sort === key ? ' ▾' : '');
    replace(
      table,
      h(
        'table',
        { class: 'list' },
        h(
          'tr',
          {},
          header('Device', 'deviceId'),
          header('Type', 'type'),
          header('Model', 'model'),
          header('Status', 'status'),
          header('Last activity', 'lastActivityTime'),
          header('Firmware', 'firmware'),
          h('th', {}, 'Open alerts'),
        ),
        ...shown.map((d) =>
          h(
            'tr',
            { 'data-device': d.deviceId },
            h('td', {}, h('a', { href: `#/devices/${encodeURIComponent(d.deviceId)}` }, d.deviceId)),
            h('td', {}, d.type ?? ''),
            h('td', {}, d.model ?? ''),
            h('td', {}, d.status),
            h('td', { title: d.lastActivityTime ?? '' }, ago(d.lastActivityTime)),
            h('td', {}, d.firmware ?? ''),
            h('td', { class: 'num' }, alerts.get(d.deviceId) ?? 0),
          ),
        ),
      ),
      h(
        'button',
        {
          class: 'link',
          onclick: () =>
            download(
              'devices.csv',
              toCsv(
                ['deviceId', 'type', 'model', 'status', 'lastActivityTime', 'firmware', 'openAlerts'],
                shown.map((d) => [d.deviceId, d.type, d.model, d.status, d.lastActivityTime, d.firmware, alerts.get(d.deviceId) ?? 0]),
              ),
            ),
        },
        'Export this page as CSV',
      ),
    );
  };

  // The whole fleet is the registry's own list; a group or a search is a twin query (the tag
  // index answers a group).
  const fetchPage = async (): Promise<Page<FleetDevice>> => {
    const where = condition(app.group, search.value);
    if (!where) return app.api.fleet(PAGE_SIZE, pages[index]);
    const page = await app.api.query<Twin>(`SELECT * FROM devices WHERE ${where}`, PAGE_SIZE, pages[index]);
    return { items: page.items.map(fleetRow), continuation: page.continuation };
  };

  const load = async () => {
    try {
      const [page, active] = await Promise.all([
        fetchPage(),
        app.rights.serviceConnect ? app.api.alerts({ active: true }) : Promise.resolve([] as Alert[]),
      ]);
      rows = page.items;
      alerts = new Map();
      for (const alert of active) alerts.set(alert.deviceId, (alerts.get(alert.deviceId) ?? 0) + 1);
      pages[index + 1] = page.continuation;
      replace(
        pager,
        h('button', { disabled: index === 0, onclick: () => ((index -= 1), void load()) }, '‹ Previous'),
        ` page ${index + 1} `,
        h('button', { disabled: !page.continuation, 'data-test': 'next-page', onclick: () => ((index += 1), void load()) }, 'Next ›'),
      );
      draw();
      // Read by the measurement of a large fleet's list (ms since the navigation started).
      performance.mark('devices-drawn');
    } catch (error) {
      replace(table, h('p', { class: 'error' }, errorText(error)));
    }
  };
  filter.addEventListener('input', draw);
  searchForm.addEventListener('submit', (event) => {
    event.preventDefault();
    pages.length = 1;
    index = 0;
    void load();
  });
  await load();
}

function createForm(app: App): HTMLElement {
  const id = h('input', { placeholder: 'new device id', 'data-test': 'new-device-id' }) as HTMLInputElement;
  const result = h('div', { 'data-test': 'created' });
  const submit = async (event: Event) => {
    event.preventDefault();
    try {
      const device = await app.api.createDevice(id.value.trim());
      const key = device.authentication?.symmetricKey?.primaryKey ?? '';
      const connection = `HostName=${app.api.hostName};DeviceId=${device.deviceId};SharedAccessKey=${key}`;
      replace(
        result,
        h('p', {}, `Created ${device.deviceId}. Its connection string is shown once:`),
        h('code', { class: 'secret', 'data-test': 'device-connection-string' }, connection),
      );
    } catch (error) {
      replace(result, h('p', { class: 'error' }, errorText(error)));
    }
  };
  return h('form', { class: 'inline', onsubmit: submit }, id, h('button', { type: 'submit' }, 'Create device'), result);
}
