// Writes a gzip copy beside every built file: the dashboard function serves it to browsers that
// accept gzip, so the page weight on the wire is the compressed size.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync, constants } from 'node:zlib';

const dist = new URL('../dist/', import.meta.url).pathname;
let raw = 0;
let compressed = 0;
for (const name of readdirSync(dist)) {
  if (name.endsWith('.gz')) continue;
  const bytes = readFileSync(join(dist, name));
  const gz = gzipSync(bytes, { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(join(dist, `${name}.gz`), gz);
  raw += bytes.length;
  compressed += gz.length;
}
console.log(`dashboard: ${raw} bytes, ${compressed} bytes gzip`);
