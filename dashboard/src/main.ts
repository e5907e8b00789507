// The dashboard's shell: sign-in, navigation, the time range every panel follows, and a hash
// router that gives each view a fresh root and stops the previous view's polling.

import './style.css';

import { Api, ApiError, Rights } from './api';
import { App, DEFAULT_RANGE, errorText } from './app';
import { ConnectionStringError, TokenSource, parseConnectionString } from './connection';
import { h, replace } from './dom';
import { groupText, parseGroup } from './group';
import { RANGES, customRange } from './range';
import { alerts } from './views/alerts';
import { devicePage } from './views/device';
import { devices } from './views/devices';
import { overview } from './views/overview';
import { rulePage, rules } from './views/rules';
import { groupTelemetry } from './views/telemetry';

// The key stays in this tab's session: gone when the tab closes, never sent to the hub.
const STORAGE_KEY = 'hub-connection-string';

const root = document.getElementById('app') as HTMLElement;
let timers: number[] = [];

function stopPolling(): void {
  for (const timer of timers) window.clearInterval(timer);
  timers = [];
}

async function signIn(text: string): Promise<App> {
  const connection = parseConnectionString(text);
  const api = new Api(new TokenSource(connection));
  const session = await api.session();
  return {
    api,
    policy: session.policy,
    rights: new Rights(session.rights),
    range: DEFAULT_RANGE,
    group: null,
    every(seconds, task) {
      const generation = timers;
      timers.push(
        window.setInterval(() => {
          if (generation === timers) void task();
        }, seconds * 1000),
      );
    },
  };
}

function signInView(message?: string): void {
  stopPolling();
  const input = h('textarea', {
    rows: 3,
    placeholder: 'HostName=…;SharedAccessKeyName=iothubowner;SharedAccessKey=…',
    'data-test': 'connection-string',
    autocomplete: 'off',
  }) as HTMLTextAreaElement;
  const error = h('p', { class: 'error', 'data-test': 'sign-in-error', role: 'alert' }, message ?? '');
  const submit = async (event: Event) => {
    event.preventDefault();
    try {
      const app = await signIn(input.value);
      sessionStorage.setItem(STORAGE_KEY, input.value.trim());
      start(app);
    } catch (failure) {
      error.textContent = signInError(failure);
    }
  };
  replace(
    root,
    h(
      'form',
      { class: 'sign-in', onsubmit: submit },
      h('h1', {}, 'IoT hub'),
      h('p', {}, 'Paste a shared access policy connection string. The key stays in this tab.'),
      input,
      h('button', { type: 'submit', 'data-test': 'sign-in' }, 'Sign in'),
      error,
    ),
  );
}

function signInError(failure: unknown): string {
  if (failure instanceof ConnectionStringError) return `That connection string does not work: ${failure.message}.`;
  if (failure instanceof ApiError && failure.status === 401) {
    return 'The hub refused this connection string: the policy or its key is wrong, or the key was rotated.';
  }
  if (failure instanceof TypeError) return 'The hub could not be reached.';
  return errorText(failure);
}

function start(app: App): void {
  const nav = h(
    'nav',
    {},
    h('a', { href: '#/overview' }, 'Overview'),
    h('a', { href: '#/devices' }, 'Devices'),
    h('a', { href: '#/telemetry' }, 'Telemetry'),
    h('a', { href: '#/alerts' }, 'Alerts'),
    h('a', { href: '#/rules' }, 'Rules'),
  );
  const range = h(
    'select',
    { 'data-test': 'range' },
    ...RANGES.map((r) => h('option', { value: String(r.seconds), selected: r === app.range }, r.label)),
    h('option', { value: 'custom' }, 'Custom…'),
  ) as HTMLSelectElement;
  const customFrom = h('input', { type: 'datetime-local', 'data-test': 'range-from' }) as HTMLInputElement;
  const customTo = h('input', { type: 'datetime-local', 'data-test': 'range-to' }) as HTMLInputElement;
  const customError = h('span', { class: 'error' });
  const custom = h(
    'form',
    { class: 'inline custom-range', hidden: true },
    customFrom,
    customTo,
    h('button', { type: 'submit' }, 'Apply'),
    customError,
  );
  custom.addEventListener('submit', (event) => {
    event.preventDefault();
    try {
      app.range = customRange(customFrom.value, customTo.value);
      customError.textContent = '';
      route();
    } catch (failure) {
      customError.textContent = errorText(failure);
    }
  });
  // The device group every panel follows: a tag value, answered by the hub's tag index.
  const groupInput = h('input', {
    placeholder: 'group: tag=value',
    value: groupText(app.group),
    'data-test': 'group',
    size: 18,
  }) as HTMLInputElement;
  const groupError = h('span', { class: 'error', 'data-test': 'group-error' });
  const groupForm = h('form', { class: 'inline' }, groupInput, groupError);
  groupForm.addEventListener('submit', (event) => {
    event.preventDefault();
    try {
      app.group = parseGroup(groupInput.value);
      groupError.textContent = '';
      route();
    } catch (failure) {
      groupError.textContent = errorText(failure);
    }
  });
  const signOut = () => {
    sessionStorage.removeItem(STORAGE_KEY);
    signInView();
  };
  const view = h('main', {});
  replace(
    root,
    h(
      'header',
      {},
      nav,
      h('span', { class: 'spacer' }),
      app.rights.registryRead ? groupForm : null,
      range,
      custom,
      h('span', { class: 'who', 'data-test': 'policy' }, app.policy),
      h('button', { class: 'link', onclick: signOut }, 'Sign out'),
    ),
    view,
  );
  const route = () => {
    stopPolling();
    const [path, search] = location.hash.replace(/^#/, '').split('?');
    const query = new URLSearchParams(search ?? '');
    const parts = (path || '/overview').split('/').filter(Boolean).map(decodeURIComponent);
    const next = h('div', {});
    replace(view, next);
    const shown = (() => {
      if (parts[0] === 'devices' && parts[1]) return devicePage(app, next, parts[1]);
      if (parts[0] === 'devices') return devices(app, next);
      if (parts[0] === 'alerts') return alerts(app, next, query);
      if (parts[0] === 'rules' && parts[1]) return rulePage(app, next, parts[1], query);
      if (parts[0] === 'rules') return rules(app, next);
      if (parts[0] === 'telemetry') return groupTelemetry(app, next, query);
      return overview(app, next);
    })();
    shown.catch((failure: unknown) => replace(next, h('p', { class: 'error' }, errorText(failure))));
  };
  range.addEventListener('change', () => {
    custom.hidden = range.value !== 'custom';
    if (range.value === 'custom') return;
    app.range = RANGES.find((r) => String(r.seconds) === range.value) ?? app.range;
    route();
  });
  window.onhashchange = route;
  route();
}

const saved = sessionStorage.getItem(STORAGE_KEY);
if (saved) {
  signIn(saved).then(start, (failure: unknown) => signInView(signInError(failure)));
} else {
  signInView();
}
