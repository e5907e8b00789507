// A shared access policy connection string and the SAS tokens derived from it in the browser.
// The key stays in this tab: it signs tokens here (WebCrypto) and is never sent.

export interface Connection {
  hostName: string;
  policyName: string;
  key: string;
}

export class ConnectionStringError extends Error {}

/** Parses `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` (Azure's format). */
export function parseConnectionString(text: string): Connection {
  const fields = new Map<string, string>();
  for (const part of text.trim().split(';')) {
    if (part === '') continue;
    const at = part.indexOf('=');
    if (at <= 0) throw new ConnectionStringError(`"${part}" is not a Name=value pair`);
    fields.set(part.slice(0, at).trim(), part.slice(at + 1).trim());
  }
  if (fields.has('DeviceId')) {
    throw new ConnectionStringError(
      'this is a device connection string; sign in with a shared access policy (SharedAccessKeyName)',
    );
  }
  const hostName = fields.get('HostName');
  const policyName = fields.get('SharedAccessKeyName');
  const key = fields.get('SharedAccessKey');
  const missing = [
    ['HostName', hostName],
    ['SharedAccessKeyName', policyName],
    ['SharedAccessKey', key],
  ]
    .filter(([, value]) => !value)
    .map(([name]) => name);
  if (missing.length > 0 || !hostName || !policyName || !key) {
    throw new ConnectionStringError(`the connection string has no ${missing.join(', ')}`);
  }
  if (!isBase64(key)) throw new ConnectionStringError('SharedAccessKey is not base64');
  return { hostName, policyName, key };
}

function isBase64(text: string): boolean {
  return /^[A-Za-z0-9+/]+={0,2}$/.test(text) && text.length % 4 === 0;
}

function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function toBase64(bytes: ArrayBuffer): string {
  let binary = '';
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * A service SAS token for the whole hub: `sig` is base64(HMAC-SHA256(key, "<sr as sent>\n<se>")),
 * with `sr` the URL-encoded host name, exactly as Azure's SDKs make it.
 */
export async function sasToken(connection: Connection, expiresAt: number): Promise<string> {
  const resource = encodeURIComponent(connection.hostName);
  const expiry = Math.floor(expiresAt).toString();
  const key = await crypto.subtle.importKey(
    'raw',
    fromBase64(connection.key),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  const signature = await crypto.subtle.sign(
    'HMAC',
    key,
    new TextEncoder().encode(`${resource}\n${expiry}`),
  );
  return (
    `SharedAccessSignature sr=${resource}&sig=${encodeURIComponent(toBase64(signature))}` +
    `&se=${expiry}&skn=${encodeURIComponent(connection.policyName)}`
  );
}

/** Tokens live this long; a new one is made when less than a minute is left. */
export const TOKEN_SECONDS = 15 * 60;

export class TokenSource {
  private token: string | null = null;
  private expiresAt = 0;

  constructor(
    readonly connection: Connection,
    private readonly now: () => number = () => Date.now() / 1000,
  ) {}

  async get(): Promise<string> {
    const now = this.now();
    if (this.token === null || this.expiresAt - now < 60) {
      this.expiresAt = now + TOKEN_SECONDS;
      this.token = await sasToken(this.connection, this.expiresAt);
    }
    return this.token;
  }
}
