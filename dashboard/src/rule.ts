// Rules as the hub's rules API takes them, and the editor's form: a rule is edited as plain
// fields (so an operator need not write JSON) and checked here before the hub checks it again.

export interface Rule {
  id: string;
  description?: string;
  enabled: boolean;
  devices: { all?: boolean; ids?: string[]; tags?: Record<string, unknown> };
  condition: {
    field: string;
    operator?: string;
    threshold?: number;
    learned?: { sensitivity?: number; warmup?: number; alpha?: number; direction?: string; minDeviation?: number };
    aggregation?: 'reading' | 'windowMean';
    window?: string | null;
    consecutive?: number;
  };
  cooldownSeconds?: number;
  actions: {
    alert?: { severity: string } | null;
    command?: { body: string; properties?: Record<string, string>; ack?: string; ttlSeconds?: number | null } | null;
  };
  etag?: string;
}

export const OPERATORS = ['>', '>=', '<', '<=', '==', '!='];
export const SEVERITIES = ['critical', 'error', 'warning', 'info'];
export const DIRECTIONS = ['above', 'below', 'either'];

/** The editor's fields, all text as inputs hold them. */
export interface RuleForm {
  id: string;
  description: string;
  enabled: boolean;
  /** `all`, `ids` or `tags`. */
  devices: string;
  /** Comma-separated device ids, or `tag=value` pairs (comma-separated) for `tags`. */
  selection: string;
  /** `threshold` or `learned`. */
  kind: string;
  field: string;
  operator: string;
  threshold: string;
  aggregation: string;
  window: string;
  consecutive: string;
  sensitivity: string;
  warmup: string;
  direction: string;
  minDeviation: string;
  cooldownSeconds: string;
  /** An alert severity, or empty for no alert. */
  severity: string;
  /** The command's body, or empty for no command. */
  command: string;
}

export function emptyForm(): RuleForm {
  return {
    id: '',
    description: '',
    enabled: true,
    devices: 'all',
    selection: '',
    kind: 'threshold',
    field: '',
    operator: '>',
    threshold: '',
    aggregation: 'reading',
    window: '1m',
    consecutive: '1',
    sensitivity: '5',
    warmup: '120',
    direction: 'above',
    minDeviation: '0',
    cooldownSeconds: '300',
    severity: 'warning',
    command: '',
  };
}

/** A tag value as typed: a number or `true`/`false` is that type, a quoted or other text a string. */
export function tagValue(text: string): unknown {
  const trimmed = text.trim();
  if (/^".*"$/.test(trimmed)) return trimmed.slice(1, -1);
  if (trimmed === 'true' || trimmed === 'false') return trimmed === 'true';
  if (trimmed !== '' && Number.isFinite(Number(trimmed))) return Number(trimmed);
  return trimmed;
}

function tagText(value: unknown): string {
  if (typeof value === 'string' && (value === 'true' || value === 'false' || Number.isFinite(Number(value)))) {
    return `"${value}"`;
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export function formFromRule(rule: Rule): RuleForm {
  const form = emptyForm();
  const c = rule.condition;
  const tags = Object.entries(rule.devices.tags ?? {});
  const devices = rule.devices.all ? 'all' : tags.length > 0 ? 'tags' : 'ids';
  return {
    ...form,
    id: rule.id,
    description: rule.description ?? '',
    enabled: rule.enabled,
    devices,
    selection:
      devices === 'tags'
        ? tags.map(([k, v]) => `${k}=${tagText(v)}`).join(', ')
        : devices === 'ids'
          ? (rule.devices.ids ?? []).join(', ')
          : '',
    kind: c.learned ? 'learned' : 'threshold',
    field: c.field,
    operator: c.operator ?? form.operator,
    threshold: c.threshold === undefined ? '' : String(c.threshold),
    aggregation: c.aggregation ?? 'reading',
    window: c.window ?? form.window,
    consecutive: String(c.consecutive ?? 1),
    sensitivity: String(c.learned?.sensitivity ?? form.sensitivity),
    warmup: String(c.learned?.warmup ?? form.warmup),
    direction: c.learned?.direction ?? form.direction,
    minDeviation: String(c.learned?.minDeviation ?? form.minDeviation),
    cooldownSeconds: String(rule.cooldownSeconds ?? 300),
    severity: rule.actions.alert?.severity ?? '',
    command: rule.actions.command?.body ?? '',
  };
}

export class RuleFormError extends Error {}

function number(text: string, name: string, check: (n: number) => boolean, rule: string): number {
  const value = Number(text.trim());
  if (text.trim() === '' || !Number.isFinite(value) || !check(value)) {
    throw new RuleFormError(`${name} must be ${rule}`);
  }
  return value;
}

/** The rule a form describes (keeping `base`'s command settings beyond the body), or why not. */
export function ruleFromForm(form: RuleForm, base?: Rule): Rule {
  const id = form.id.trim();
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) {
    throw new RuleFormError("the id must be 1 to 64 letters, digits, '-', '_' or '.'");
  }
  const field = form.field.trim();
  if (!field) throw new RuleFormError('the field must name a numeric telemetry field');
  const items = form.selection
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  let devices: Rule['devices'];
  if (form.devices === 'all') devices = { all: true };
  else if (form.devices === 'ids') {
    if (items.length === 0) throw new RuleFormError('list at least one device id');
    devices = { ids: items };
  } else {
    if (items.length === 0) throw new RuleFormError('name at least one tag=value');
    const tags: Record<string, unknown> = {};
    for (const item of items) {
      const at = item.indexOf('=');
      if (at <= 0 || at === item.length - 1) throw new RuleFormError(`"${item}" is not tag=value`);
      tags[item.slice(0, at).trim()] = tagValue(item.slice(at + 1));
    }
    // A rule may select by ids and tags at once; the form edits the tags and keeps the ids.
    devices = base?.devices.ids ? { ids: base.devices.ids, tags } : { tags };
  }
  const consecutive = number(form.consecutive, 'consecutive', (n) => Number.isInteger(n) && n >= 1 && n <= 1000, 'a whole number from 1 to 1000');
  const condition: Rule['condition'] = { field, consecutive };
  if (form.kind === 'learned') {
    // Fields the form does not show (alpha) keep their saved values.
    condition.learned = {
      ...(base?.condition.learned ?? {}),
      sensitivity: number(form.sensitivity, 'sensitivity', (n) => n > 0, 'a positive number'),
      warmup: number(form.warmup, 'warm-up', (n) => Number.isInteger(n) && n >= 2 && n <= 10000, 'from 2 to 10000 readings'),
      direction: DIRECTIONS.includes(form.direction) ? form.direction : 'above',
      minDeviation: number(form.minDeviation, 'minimum deviation', (n) => n >= 0, 'zero or more'),
    };
  } else {
    if (!OPERATORS.includes(form.operator)) throw new RuleFormError(`unknown operator ${form.operator}`);
    condition.operator = form.operator;
    condition.threshold = number(form.threshold, 'the threshold', () => true, 'a number');
  }
  // Learned rules may watch window means too.
  if (form.aggregation === 'windowMean') {
    condition.aggregation = 'windowMean';
    condition.window = form.window.trim();
  }
  const severity = form.severity.trim();
  const body = form.command;
  if (!severity && !body) throw new RuleFormError('a rule must raise an alert, send a command, or both');
  const baseCommand = base?.actions.command ?? null;
  return {
    id,
    description: form.description.trim(),
    enabled: form.enabled,
    devices,
    condition,
    cooldownSeconds: number(form.cooldownSeconds, 'the cooldown', (n) => Number.isInteger(n) && n >= 0, 'whole seconds'),
    actions: {
      alert: severity ? { severity } : null,
      command: body ? { ...(baseCommand ?? {}), body } : null,
    },
  };
}

/** A rule's condition in a line: `temperature > 30 (2 in a row)`, `pressure above normal`. */
export function describeCondition(rule: Rule): string {
  const c = rule.condition;
  const times = (c.consecutive ?? 1) > 1 ? ` (${String(c.consecutive)} in a row)` : '';
  if (c.learned) return `${c.field} ${c.learned.direction ?? 'above'} normal${times}`;
  const subject = c.aggregation === 'windowMean' ? `mean ${c.field} per ${c.window ?? ''}` : c.field;
  return `${subject} ${c.operator ?? ''} ${String(c.threshold ?? '')}${times}`;
}

/** Which devices a rule watches, in a line. */
export function describeDevices(rule: Rule): string {
  const d = rule.devices;
  if (d.all) return 'all devices';
  const tags = Object.entries(d.tags ?? {}).map(([k, v]) => `${k}=${tagText(v)}`);
  return [...(d.ids ?? []), ...tags].join(', ');
}
