import { describe, expect, it } from 'vitest';

import { ConnectionStringError, TokenSource, parseConnectionString, sasToken } from './connection';

const KEY = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=';
const GOOD = `HostName=hub.example.com;SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`;

describe('connection strings', () => {
  it('parses a policy connection string', () => {
    expect(parseConnectionString(` ${GOOD}; `)).toEqual({
      hostName: 'hub.example.com',
      policyName: 'iothubowner',
      key: KEY,
    });
  });

  it('names what is missing or wrong', () => {
    expect(() => parseConnectionString('HostName=h;SharedAccessKey=' + KEY)).toThrow(/SharedAccessKeyName/);
    expect(() => parseConnectionString('nonsense')).toThrow(ConnectionStringError);
    expect(() => parseConnectionString('HostName=h;SharedAccessKeyName=p;SharedAccessKey=not base64!')).toThrow(
      /base64/,
    );
    expect(() => parseConnectionString(`HostName=h;DeviceId=d;SharedAccessKey=${KEY}`)).toThrow(/device connection string/);
  });
});

describe('SAS tokens', () => {
  it('signs "<encoded sr>\\n<se>" with the key, as Azure does', async () => {
    const token = await sasToken(parseConnectionString(GOOD), 1_700_000_000);
    // Computed independently (Python hmac) for the same key, resource and expiry.
    expect(token).toBe(
      'SharedAccessSignature sr=hub.example.com&sig=RjPuS8QXp5SJuvE7TYwWWi2gINZeC0qaNRYKbUsBd1A%3D' +
        '&se=1700000000&skn=iothubowner',
    );
  });

  it('reuses a token until it is about to expire', async () => {
    let now = 1_700_000_000;
    const tokens = new TokenSource(parseConnectionString(GOOD), () => now);
    const first = await tokens.get();
    now += 600;
    expect(await tokens.get()).toBe(first);
    now += 300;
    expect(await tokens.get()).not.toBe(first);
  });
});
