import { describe, expect, it } from 'vitest';

import { DeviceState } from './api';
import { MessageLog } from './messages';

const state = (count: number, id: string, time: string, values: Record<string, [number, string]>): DeviceState => ({
  deviceId: 'd',
  messageCount: count,
  lastMessageId: id,
  lastMessageTime: time,
  lastValues: Object.fromEntries(Object.entries(values).map(([k, [value, at]]) => [k, { value, time: at }])),
});

describe('recent messages', () => {
  it('keeps each new latest message once, newest first, with the fields it carried', () => {
    const log = new MessageLog(2);
    expect(log.add(null)).toBe(false);
    expect(log.add(state(5, 'm5', 't5', { a: [1, 't5'], b: [2, 't3'] }))).toBe(true);
    expect(log.add(state(5, 'm5', 't5', { a: [1, 't5'] }))).toBe(false);
    expect(log.add(state(8, 'm8', 't8', { a: [3, 't8'] }))).toBe(true);
    expect(log.all.map((m) => [m.id, m.values, m.since])).toEqual([
      ['m8', { a: 3 }, 3],
      ['m5', { a: 1 }, 1],
    ]);
    log.add(state(9, 'm9', 't9', {}));
    expect(log.all.map((m) => m.id)).toEqual(['m9', 'm8']);
  });
});
