import { describe, expect, it } from 'vitest';

import { Rule, RuleFormError, describeCondition, describeDevices, emptyForm, formFromRule, ruleFromForm } from './rule';

const threshold: Rule = {
  id: 'hot',
  description: 'too hot',
  enabled: true,
  devices: { tags: { site: 'dublin', floor: 2, code: '7' } },
  condition: { field: 'temperature', operator: '>', threshold: 30, aggregation: 'windowMean', window: '1m', consecutive: 2 },
  cooldownSeconds: 600,
  actions: { alert: { severity: 'critical' }, command: { body: 'fan on', properties: { reason: 'heat' }, ack: 'full' } },
};

describe('rule form', () => {
  it('round-trips a threshold rule, keeping the command settings the form does not show', () => {
    const form = formFromRule(threshold);
    expect(form.selection).toBe('site=dublin, floor=2, code="7"');
    expect(ruleFromForm(form, threshold)).toEqual(threshold);
  });

  it('types tag values as the hub compares them', () => {
    const rule = ruleFromForm({ ...emptyForm(), id: 'r', field: 't', threshold: '1', devices: 'tags', selection: 'site=dublin, floor=2, ok=true, code="7"' });
    expect(rule.devices).toEqual({ tags: { site: 'dublin', floor: 2, ok: true, code: '7' } });
    expect(formFromRule(rule).selection).toBe('site=dublin, floor=2, ok=true, code="7"');
  });

  it('builds a learned rule', () => {
    const rule = ruleFromForm({ ...emptyForm(), id: 'odd', field: 'pressure', kind: 'learned', sensitivity: '4', direction: 'either', severity: 'error' });
    expect(rule.condition).toEqual({ field: 'pressure', consecutive: 1, learned: { sensitivity: 4, warmup: 120, direction: 'either', minDeviation: 0 } });
    expect(describeCondition(rule)).toBe('pressure either normal');
    expect(rule.actions).toEqual({ alert: { severity: 'error' }, command: null });
  });

  it('round-trips a learned rule, keeping what the form does not show', () => {
    const learned: Rule = {
      id: 'odd',
      description: '',
      enabled: false,
      devices: { ids: ['a', 'b'], tags: { site: 'cork' } },
      condition: { field: 'pressure', consecutive: 3, aggregation: 'windowMean', window: '1h', learned: { sensitivity: 3, warmup: 50, alpha: 0.2, direction: 'below', minDeviation: 1 } },
      cooldownSeconds: 60,
      actions: { alert: { severity: 'warning' }, command: null },
    };
    expect(ruleFromForm(formFromRule(learned), learned)).toEqual(learned);
  });

  it('says what is wrong with a form', () => {
    const good = { ...emptyForm(), id: 'r', field: 't', threshold: '3' };
    const cases: [Partial<typeof good>, RegExp][] = [
      [{ id: 'has space' }, /id/],
      [{ field: ' ' }, /field/],
      [{ threshold: 'hot' }, /threshold/],
      [{ devices: 'ids', selection: '' }, /device id/],
      [{ devices: 'tags', selection: 'site' }, /tag=value/],
      [{ consecutive: '0' }, /consecutive/],
      [{ severity: '', command: '' }, /alert, send a command/],
      [{ kind: 'learned', warmup: '1' }, /warm-up/],
    ];
    expect(() => ruleFromForm(good)).not.toThrow();
    for (const [change, message] of cases) {
      expect(() => ruleFromForm({ ...good, ...change })).toThrow(RuleFormError);
      expect(() => ruleFromForm({ ...good, ...change })).toThrow(message);
    }
  });

  it('describes rules in a line', () => {
    expect(describeCondition(threshold)).toBe('mean temperature per 1m > 30 (2 in a row)');
    expect(describeDevices(threshold)).toBe('site=dublin, floor=2, code="7"');
    expect(describeDevices({ ...threshold, devices: { all: true } })).toBe('all devices');
  });
});
