// The hub's REST API as the dashboard uses it: every call signed with a fresh-enough SAS token,
// errors carried as the hub's Azure-style code and message.

import { TokenSource } from './connection';
import { Rule } from './rule';

export const API_VERSION = '2021-04-12';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Page<T> {
  items: T[];
  continuation: string | null;
}

export interface Device {
  deviceId: string;
  generationId?: string;
  status: 'enabled' | 'disabled';
  connectionState?: string;
  lastActivityTime?: string;
  cloudToDeviceMessageCount?: number;
  authentication?: { symmetricKey?: { primaryKey?: string; secondaryKey?: string } };
  etag?: string;
}

export interface Twin {
  deviceId: string;
  etag?: string;
  version?: number;
  status?: 'enabled' | 'disabled';
  connectionState?: 'Connected' | 'Disconnected';
  lastActivityTime?: string;
  tags?: Record<string, unknown>;
  properties: {
    desired: Record<string, unknown>;
    reported: Record<string, unknown>;
  };
}

export interface Statistics {
  totalDeviceCount: number;
  enabledDeviceCount: number;
  disabledDeviceCount: number;
}

export interface Alert {
  alertId?: string;
  ruleId: string;
  deviceId: string;
  severity: string;
  active: boolean;
  /** The operators' workflow state of the current raise. */
  state?: 'open' | 'acknowledged' | 'closed';
  review?: { state: string; by: string; at: string };
  raisedAt?: string;
  clearedAt?: string;
  lastValue?: number;
  expectedLow?: number;
  expectedHigh?: number;
  field?: string;
  raiseCount?: number;
  /** The alert's last raises (at most ten), oldest first. */
  recentRaises?: { raisedAt: string; value: number; clearedAt?: string }[];
  [key: string]: unknown;
}

export interface WindowPoint {
  windowStart: string;
  windowEnd: string;
  count: number;
  min: number;
  max: number;
  mean: number;
  /** The window's latest reading (a device's windows have it; a group's do not). */
  last?: { value: number; time: string };
}

/** The most devices one `POST /fleet/telemetry` merges. */
export const FLEET_TELEMETRY_DEVICES = 100;

/** Merges per-window group points (counts and sums add; extremes of extremes). */
export function mergePoints(parts: WindowPoint[][]): WindowPoint[] {
  const byStart = new Map<string, WindowPoint & { sum: number }>();
  for (const points of parts) {
    for (const p of points) {
      const sum = (p as WindowPoint & { sum?: number }).sum ?? p.mean * p.count;
      const seen = byStart.get(p.windowStart);
      if (!seen) {
        byStart.set(p.windowStart, { ...p, sum });
        continue;
      }
      seen.count += p.count;
      seen.sum += sum;
      // A group's windows also say how many devices and messages they hold: those add too.
      const extra = seen as { devices?: number; messageCount?: number };
      const more = p as { devices?: number; messageCount?: number };
      if (extra.devices !== undefined) extra.devices += more.devices ?? 0;
      if (extra.messageCount !== undefined) extra.messageCount += more.messageCount ?? 0;
      seen.min = Math.min(seen.min, p.min);
      seen.max = Math.max(seen.max, p.max);
      seen.mean = seen.count > 0 ? seen.sum / seen.count : 0;
    }
  }
  return [...byStart.values()].sort((a, b) => Date.parse(a.windowStart) - Date.parse(b.windowStart));
}

export interface Telemetry {
  deviceId: string;
  window: string;
  field: string;
  points: WindowPoint[];
}

/** What the stream processor last saw of a device (`GET /devices/{id}/state`). */
export interface DeviceState {
  deviceId: string;
  messageCount: number;
  lastMessageTime: string;
  lastMessageId: string;
  lastValues: Record<string, { value: number; time: string }>;
  /** The latest readings, oldest first, when the hub keeps them (`analytics_recent_readings`). */
  recentReadings?: { t: string; v: Record<string, number> }[];
}

/** A row of the fleet list: the registry's device with what its twin reports. */
export interface FleetDevice {
  deviceId: string;
  status: 'enabled' | 'disabled';
  lastActivityTime?: string;
  type?: string;
  model?: string;
  firmware?: string;
  tags?: Record<string, unknown>;
}

/** A twin as a fleet list shows it (what `GET /fleet/devices` answers for each device). */
export function fleetRow(twin: Twin): FleetDevice {
  const reported = twin.properties?.reported ?? {};
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  const firmware = reported.firmware as unknown;
  let version: string | undefined;
  if (typeof firmware === 'string') version = firmware;
  else if (firmware && typeof firmware === 'object') {
    const { version: v, status } = firmware as { version?: unknown; status?: unknown };
    version = text(v) && (text(status) && status !== 'current' ? `${String(v)} (${String(status)})` : text(v));
  }
  return {
    deviceId: twin.deviceId,
    status: twin.status ?? 'enabled',
    lastActivityTime: twin.lastActivityTime,
    type: text(reported.type),
    model: text(reported.model),
    firmware: version,
    tags: twin.tags ?? {},
  };
}

export interface Session {
  policy: string;
  rights: string[];
}

/** What a policy may do, by Azure's rights. */
export class Rights {
  constructor(private readonly rights: readonly string[]) {}

  get registryRead(): boolean {
    return this.has('RegistryRead') || this.registryWrite;
  }
  get registryWrite(): boolean {
    return this.has('RegistryWrite');
  }
  get serviceConnect(): boolean {
    return this.has('ServiceConnect');
  }

  private has(right: string): boolean {
    return this.rights.includes(right);
  }
}

type Fetch = typeof fetch;

export class Api {
  constructor(
    private readonly tokens: TokenSource,
    private readonly fetcher: Fetch = (input, init) => fetch(input, init),
  ) {}

  get hostName(): string {
    return this.tokens.connection.hostName;
  }

  async session(): Promise<Session> {
    return this.json('GET', '/session');
  }

  async statistics(): Promise<Statistics> {
    return this.json('GET', '/statistics/devices');
  }

  /** Devices active within the hub's connected window. */
  async connectedCount(): Promise<number> {
    const body = await this.json<{ connectedDeviceCount: number }>('GET', '/statistics/service');
    return body.connectedDeviceCount;
  }

  /** One page of a twin query (Azure's query language); a page may be short and continue. */
  async query<T>(text: string, pageSize: number, continuation: string | null): Promise<Page<T>> {
    const response = await this.call('POST', '/devices/query', { query: text }, {
      'x-ms-max-item-count': String(pageSize),
      ...(continuation ? { 'x-ms-continuation': continuation } : {}),
    });
    return { items: (await response.json()) as T[], continuation: response.headers.get('x-ms-continuation') };
  }

  /** Every result of a twin query, up to `limit`. */
  async queryAll<T>(text: string, limit = 5000): Promise<T[]> {
    const all: T[] = [];
    let continuation: string | null = null;
    do {
      const page: Page<T> = await this.query<T>(text, 1000, continuation);
      all.push(...page.items);
      continuation = page.continuation;
    } while (continuation && all.length < limit);
    return all.slice(0, limit);
  }

  async devices(top: number, continuation: string | null): Promise<Page<Device>> {
    const response = await this.call('GET', `/devices?top=${top}`, undefined, {
      ...(continuation ? { 'x-ms-continuation': continuation } : {}),
    });
    return {
      items: (await response.json()) as Device[],
      continuation: response.headers.get('x-ms-continuation'),
    };
  }

  async fleet(top: number, continuation: string | null): Promise<Page<FleetDevice>> {
    const response = await this.call('GET', `/fleet/devices?top=${top}`, undefined, {
      ...(continuation ? { 'x-ms-continuation': continuation } : {}),
    });
    const body = (await response.json()) as { devices: FleetDevice[] };
    return { items: body.devices, continuation: response.headers.get('x-ms-continuation') };
  }

  async device(id: string): Promise<Device> {
    return this.json('GET', `/devices/${encodeURIComponent(id)}`);
  }

  async createDevice(id: string): Promise<Device> {
    return this.json('PUT', `/devices/${encodeURIComponent(id)}`, { deviceId: id, status: 'enabled' });
  }

  async updateDevice(device: Device): Promise<Device> {
    return this.json('PUT', `/devices/${encodeURIComponent(device.deviceId)}`, device, {
      'If-Match': device.etag ? `"${device.etag.replace(/"/g, '')}"` : '*',
    });
  }

  async deleteDevice(id: string): Promise<void> {
    await this.call('DELETE', `/devices/${encodeURIComponent(id)}`, undefined, { 'If-Match': '*' });
  }

  /** The device's state, or null before the hub has processed a message from it. */
  async deviceState(id: string): Promise<DeviceState | null> {
    try {
      return await this.json<DeviceState>('GET', `/devices/${encodeURIComponent(id)}/state`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }
  }

  async twin(id: string): Promise<Twin> {
    return this.json('GET', `/twins/${encodeURIComponent(id)}`);
  }

  async patchDesired(id: string, desired: Record<string, unknown>): Promise<Twin> {
    return this.json('PATCH', `/twins/${encodeURIComponent(id)}`, { properties: { desired } });
  }

  async sendCommand(id: string, name: string, payload: unknown): Promise<void> {
    await this.call('POST', `/devices/${encodeURIComponent(id)}/messages/deviceBound`, {
      name,
      payload,
    }, { 'iothub-ack': 'full', 'content-type': 'application/json' });
  }

  async alerts(filter: { active?: boolean; deviceId?: string; ruleId?: string; state?: string }): Promise<Alert[]> {
    const query = new URLSearchParams();
    if (filter.state) query.set('state', filter.state);
    if (filter.active !== undefined) query.set('active', String(filter.active));
    if (filter.deviceId) query.set('deviceId', filter.deviceId);
    if (filter.ruleId) query.set('ruleId', filter.ruleId);
    const body = await this.json<{ alerts: Alert[] }>('GET', `/alerts?${query.toString()}`);
    return body.alerts;
  }

  async rules(): Promise<Rule[]> {
    return (await this.json<{ rules: Rule[] }>('GET', '/rules')).rules;
  }

  async rule(id: string): Promise<Rule> {
    return this.json('GET', `/rules/${encodeURIComponent(id)}`);
  }

  /** Creates a rule (409 if the id exists) or, with `etag`, replaces that version of it (412 if
   * someone changed it meanwhile). */
  async saveRule(rule: Rule, etag?: string): Promise<Rule> {
    const body = { ...rule, etag: undefined };
    if (etag === undefined) return this.json('POST', '/rules', body);
    return this.json('PUT', `/rules/${encodeURIComponent(rule.id)}`, body, { 'If-Match': `"${etag}"` });
  }

  async deleteRule(id: string): Promise<void> {
    await this.call('DELETE', `/rules/${encodeURIComponent(id)}`, undefined, { 'If-Match': '*' });
  }

  /** One field of a group of devices, window by window: a request per 100 devices, merged. */
  async groupTelemetry(ids: string[], field: string, window: string, from: Date, to: Date): Promise<WindowPoint[]> {
    const chunks: string[][] = [];
    for (let i = 0; i < ids.length; i += FLEET_TELEMETRY_DEVICES) chunks.push(ids.slice(i, i + FLEET_TELEMETRY_DEVICES));
    const parts = await Promise.all(
      chunks.map(async (deviceIds) => {
        const body = { deviceIds, field, window, from: from.toISOString(), to: to.toISOString() };
        return (await this.json<{ points: WindowPoint[] }>('POST', '/fleet/telemetry', body)).points;
      }),
    );
    return mergePoints(parts);
  }

  async reviewAlert(alert: Alert, action: 'acknowledge' | 'close'): Promise<Alert> {
    const path = `/alerts/${encodeURIComponent(alert.ruleId)}/${encodeURIComponent(alert.deviceId)}/${action}`;
    return this.json('POST', path);
  }

  async telemetry(id: string, field: string, window: string, from: Date, to: Date): Promise<Telemetry> {
    const query = new URLSearchParams({
      field,
      window,
      from: from.toISOString(),
      to: to.toISOString(),
    });
    return this.json('GET', `/devices/${encodeURIComponent(id)}/telemetry?${query.toString()}`);
  }

  private async json<T>(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const response = await this.call(method, path, body, headers);
    return (await response.json()) as T;
  }

  private async call(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    const separator = path.includes('?') ? '&' : '?';
    const response = await this.fetcher(`${path}${separator}api-version=${API_VERSION}`, {
      method,
      headers: {
        Authorization: await this.tokens.get(),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw await apiError(response);
    return response;
  }
}

async function apiError(response: Response): Promise<ApiError> {
  const code = response.headers.get('iothub-errorcode') ?? `Http${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const body = (await response.json()) as { Message?: string; message?: string };
    message = body.Message ?? body.message ?? message;
  } catch {
    // Not JSON: the status line says enough.
  }
  return new ApiError(response.status, code, message);
}
