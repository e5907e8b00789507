// What every view shares: the signed-in API, the policy's rights, the chosen time range, and
// a way to report errors in place.

import { Api, ApiError, Rights } from './api';
import { RANGES, Range } from './range';

export interface App {
  api: Api;
  rights: Rights;
  policy: string;
  range: Range;
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
