// Device groups and fleet-wide search, as conditions of the hub's twin queries
// (POST /devices/query, Azure's query language): a group is a tag value (`site = dublin`,
// `location.building = B2`), which the hub answers from its tag index.

export interface Group {
  /** The tag's path below `tags`, dotted. */
  path: string;
  value: string | number | boolean;
}

export class GroupError extends Error {}

const PATH = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** `tag=value`: a quoted value is a string; a bare number or true/false is that; else a string. */
export function parseGroup(text: string): Group | null {
  const trimmed = text.trim();
  if (!trimmed) return null;
  const at = trimmed.indexOf('=');
  if (at <= 0) throw new GroupError('a group is tag=value, for example site=dublin');
  const path = trimmed.slice(0, at).trim().replace(/^tags\./, '');
  const raw = trimmed.slice(at + 1).trim();
  if (!PATH.test(path)) throw new GroupError(`"${path}" is not a tag name (letters, digits, _ and -, dotted)`);
  if (!raw) throw new GroupError('the group needs a value after =');
  const quoted = /^(['"])(.*)\1$/.exec(raw);
  if (quoted) return { path, value: quoted[2] };
  if (/^-?\d+(\.\d+)?$/.test(raw)) return { path, value: Number(raw) };
  if (raw === 'true' || raw === 'false') return { path, value: raw === 'true' };
  return { path, value: raw };
}

export function groupText(group: Group | null): string {
  if (!group) return '';
  return typeof group.value === 'string' && /^(-?\d+(\.\d+)?|true|false)$/.test(group.value)
    ? `${group.path}='${group.value}'`
    : `${group.path}=${String(group.value)}`;
}

/** A string literal of the query language. */
export function literal(value: string | number | boolean): string {
  if (typeof value !== 'string') return String(value);
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** The condition selecting a group's devices and, optionally, ids starting with `prefix`. */
export function condition(group: Group | null, prefix = ''): string | null {
  const parts: string[] = [];
  if (group) parts.push(`tags.${group.path} = ${literal(group.value)}`);
  if (prefix.trim()) parts.push(`STARTSWITH(deviceId, ${literal(prefix.trim())})`);
  return parts.length ? parts.join(' AND ') : null;
}
