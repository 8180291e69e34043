// `onnx-compress keys create|list|revoke` against a real database, and the first-start bootstrap.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { authenticateApiKey } from '../../packages/platform/auth/keys.js';
import { announceApiKeys, bootstrapApiKeys } from '../../packages/platform/auth/bootstrap.js';
import { createTestDatabase, type TestDatabase } from './webhooks-support.js';

const root = new URL('../../', import.meta.url).pathname;
let tdb: TestDatabase;

/** Runs the keys command module through commander in a child process, like the CLI does. */
function cli(...args: string[]) {
  const script =
    "import { Command } from 'commander'; import { register } from './apps/cli/commands/keys.ts';" +
    "const p = new Command('onnx-compress').exitOverride(); register(p);" +
    'try { await p.parseAsync(process.argv.slice(1), { from: "user" }); }' +
    'catch (e) { process.stderr.write("error: " + e.message + "\\n"); process.exitCode = 1; }';
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, DATABASE_URL: tdb.url },
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

before(async () => {
  tdb = await createTestDatabase('keys');
});
after(async () => {
  await tdb?.drop();
});

test('bootstrap on an empty database explains how to create a key, or creates one once', async () => {
  const printed: string[] = [];
  const first = await announceApiKeys(tdb.db, (m) => printed.push(m), { createFirstKey: false });
  assert.equal(printed.length, 1);
  assert.match(printed[0], /No API key exists yet/);
  assert.equal(first.kind, 'instructions');
  if (first.kind === 'instructions') assert.match(first.message, /onnx-compress keys create --tenant/);
  const created = await bootstrapApiKeys(tdb.db, { createFirstKey: true });
  assert.equal(created.kind, 'created');
  if (created.kind === 'created') {
    assert.match(created.key, /^oc_[A-Za-z0-9_-]{43}$/);
    assert.ok(await authenticateApiKey(tdb.db, created.key));
  }
  assert.equal((await bootstrapApiKeys(tdb.db, { createFirstKey: true })).kind, 'keys-exist');
});

test('keys create --json prints the key once; list shows it hashed; revoke makes it unusable', async () => {
  const c = cli('keys', 'create', '--tenant', 'acme', '--name', 'ci', '--json');
  assert.equal(c.code, 0, c.err);
  const made = JSON.parse(c.out) as { key: string; id: string; prefix: string; tenant: string };
  assert.match(made.key, /^oc_/);
  assert.equal(made.tenant, 'acme');
  const who = await authenticateApiKey(tdb.db, made.key);
  assert.ok(who);
  // Only the hash is stored.
  const row = await tdb.db.apiKey.findUniqueOrThrow({ where: { id: made.id } });
  assert.notEqual(row.hash, made.key);
  assert.equal(JSON.stringify(row).includes(made.key), false);

  const l = cli('keys', 'list', '--tenant', 'acme', '--json');
  assert.equal(l.code, 0, l.err);
  const listed = JSON.parse(l.out) as { id: string; prefix: string; revokedAt: string | null }[];
  assert.deepEqual(
    listed.map((k) => [k.id, k.prefix, k.revokedAt]),
    [[made.id, made.prefix, null]],
  );
  assert.equal(l.out.includes(made.key), false, 'list never prints keys');

  const r = cli('keys', 'revoke', made.id);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /revoked key "ci"/);
  assert.equal(await authenticateApiKey(tdb.db, made.key), null);

  const text = cli('keys', 'create', '--tenant', 'acme');
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /shown only now:\n\n {2}oc_[A-Za-z0-9_-]{43}\n/);

  const bad = cli('keys', 'revoke', 'oc_nothing');
  assert.equal(bad.code, 1);
  assert.match(bad.err, /no API key with id or prefix "oc_nothing"/);
});
