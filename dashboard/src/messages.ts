// The device page's recent messages: each message the stream processor reports as the device's
// latest, collected while the page is open (the hub keeps aggregates, not raw messages).

import { DeviceState } from './api';

export interface SeenMessage {
  id: string;
  time: string;
  /** The numeric fields that message carried. */
  values: Record<string, number>;
  /** Messages the hub processed from the device since the previous one seen here. */
  since: number;
}

export class MessageLog {
  private readonly messages: SeenMessage[] = [];
  private lastCount: number | null = null;

  constructor(private readonly limit = 50) {}

  /** Takes in a state read; answers whether it showed a message not seen before. */
  add(state: DeviceState | null): boolean {
    if (!state?.lastMessageId || this.messages[0]?.id === state.lastMessageId) return false;
    const values: Record<string, number> = {};
    for (const [field, reading] of Object.entries(state.lastValues ?? {})) {
      if (reading.time === state.lastMessageTime) values[field] = reading.value;
    }
    const since = this.lastCount === null ? 1 : Math.max(1, state.messageCount - this.lastCount);
    this.lastCount = state.messageCount;
    this.messages.unshift({ id: state.lastMessageId, time: state.lastMessageTime, values, since });
    this.messages.length = Math.min(this.messages.length, this.limit);
    return true;
  }

  get all(): readonly SeenMessage[] {
    return this.messages;
  }
}
