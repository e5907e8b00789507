import { describe, expect, it } from 'vitest';

import { toCsv } from './csv';

describe('CSV export', () => {
  it('quotes what needs quoting and leaves empty cells empty', () => {
    expect(toCsv(['a', 'b', 'c'], [['x,y', 'say "hi"', null], [1, { k: 2 }, undefined]])).toBe(
      'a,b,c\r\n"x,y","say ""hi""",\r\n1,"{""k"":2}",\r\n',
    );
  });
});
