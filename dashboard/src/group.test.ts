import { describe, expect, it } from 'vitest';

import { GroupError, condition, groupText, literal, parseGroup } from './group';

describe('device groups', () => {
  it('reads tag=value with the value typed as written', () => {
    expect(parseGroup('site=dublin')).toEqual({ path: 'site', value: 'dublin' });
    expect(parseGroup(' tags.location.building = B2 ')).toEqual({ path: 'location.building', value: 'B2' });
    expect(parseGroup('floor=3')).toEqual({ path: 'floor', value: 3 });
    expect(parseGroup("floor='3'")).toEqual({ path: 'floor', value: '3' });
    expect(parseGroup('active=true')).toEqual({ path: 'active', value: true });
    expect(parseGroup('')).toBeNull();
  });

  it('refuses what is not a group', () => {
    for (const text of ['dublin', '=x', 'site=', 'si te=x', "site'=x"]) {
      expect(() => parseGroup(text)).toThrow(GroupError);
    }
  });

  it('writes conditions the hub parses, quotes escaped', () => {
    expect(condition(parseGroup('site=dublin'))).toBe("tags.site = 'dublin'");
    expect(condition(parseGroup('floor=3'), 'sim-')).toBe("tags.floor = 3 AND STARTSWITH(deviceId, 'sim-')");
    expect(condition(null, '')).toBeNull();
    expect(literal("o'brien\\x")).toBe("'o\\'brien\\\\x'");
    expect(groupText(parseGroup("floor='3'"))).toBe("floor='3'");
    expect(groupText(parseGroup('site=dublin'))).toBe('site=dublin');
  });
});
