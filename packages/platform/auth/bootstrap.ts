// First start on an empty database: with no API key at all nobody could call /v1, so `npm start` either prints the
// command that creates one, or (when asked to, e.g. for a single-user install) creates a first key and prints it once.
import type { PrismaClient } from '../../../prisma/generated/client.js';
import { countApiKeys, createApiKey } from './keys.js';

export type BootstrapOutcome =
  | { kind: 'keys-exist' }
  | { kind: 'instructions'; message: string }
  | { kind: 'created'; key: string; tenantName: string; message: string };

export const CREATE_KEY_COMMAND = 'npx onnx-compress keys create --tenant <name> [--name <key name>] [--json]';

/**
 * When no key exists: with `createFirstKey`, creates tenant "default" with a key and returns it (shown once);
 * otherwise returns instructions. Concurrent starters may both see zero keys; only `createFirstKey` writes.
 */
export async function bootstrapApiKeys(
  db: PrismaClient,
  opts: { createFirstKey: boolean; tenant?: string },
): Promise<BootstrapOutcome> {
  if ((await countApiKeys(db)) > 0) return { kind: 'keys-exist' };
  if (!opts.createFirstKey) {
    return {
      kind: 'instructions',
      message:
        'No API key exists yet: every /v1 request needs "Authorization: Bearer <key>". Create one with:\n' +
        `  ${CREATE_KEY_COMMAND}\n` +
        '(or start with BOOTSTRAP_API_KEY=1 to have a first key created and printed once)',
    };
  }
  const tenantName = opts.tenant ?? 'default';
  const created = await createApiKey(db, { tenant: tenantName, name: 'bootstrap' });
  return {
    kind: 'created',
    key: created.key,
    tenantName,
    message:
      `Created the first API key for tenant "${tenantName}" (shown only now, store it safely):\n` +
      `  ${created.key}\n` +
      'Use it as "Authorization: Bearer <key>"; manage keys with `npx onnx-compress keys list|create|revoke`.',
  };
}

/**
 * What `npm start` / `onnx-compress serve` call once the database is migrated: prints nothing when keys exist,
 * otherwise how to create one (or, with BOOTSTRAP_API_KEY=1, the first key, once).
 */
export async function announceApiKeys(
  db: PrismaClient,
  print: (message: string) => void,
  opts: { createFirstKey: boolean },
): Promise<BootstrapOutcome> {
  const outcome = await bootstrapApiKeys(db, opts);
  if (outcome.kind !== 'keys-exist') print(outcome.message);
  return outcome;
}
