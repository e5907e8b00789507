// What every view shares: the signed-in API, the policy's rights, the chosen time range and
// device group, and
// a way to report errors in place.

import { Api, ApiError, Rights } from './api';
import { Group, condition } from './group';
import { RANGES, Range } from './range';

export interface App {
  api: Api;
  rights: Rights;
  policy: string;
  range: Range;
  /** The device group (a tag value) the panels show, or the whole fleet. */
  group: Group | null;
  /** Called by views that poll; cleared when the view changes. */
  every(seconds: number, task: () => Promise<void>): void;
}

export function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 401) return `Not authorized (${error.code}): ${error.message}`;
    return `${error.code} (${error.status}): ${error.message}`;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

export const DEFAULT_RANGE: Range = RANGES[1];

/** The ids of the group's devices (all pages), or null for the whole fleet. */
export async function groupMembers(app: App): Promise<Set<string> | null> {
  if (!app.group) return null;
  const where = condition(app.group);
  const rows = await app.api.queryAll<{ deviceId: string }>(`SELECT deviceId FROM devices WHERE ${where ?? 'true'}`);
  return new Set(rows.map((r) => r.deviceId));
}
