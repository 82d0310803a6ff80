import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A secret from the environment, or else one generated on first start and kept in DATA_DIR
 * (mode 0600), so `npm start` on a fresh machine needs no setup and a restart keeps it.
 */
export function secretFromEnvOrFile(value: string | undefined, dataDir: string, name: string): { value: string; file?: string } {
  if (value) return { value };
  const file = join(dataDir, name);
  try {
    const stored = readFileSync(file, 'utf8').trim();
    if (stored.length >= 16) return { value: stored, file };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dataDir, { recursive: true });
  const generated = randomBytes(32).toString('base64url');
  writeFileSync(file, `${generated}\n`, { mode: 0o600, flag: 'wx' });
  return { value: generated, file };
}
