// Migrating leaves no lock behind: the wasm schema engine takes Prisma's migration advisory lock (72707369) on a
// pooled session and never unlocks it, so until that pool was closed, any other process that migrated (an API and a
// worker starting, a rolling restart) waited for it. Processes here are real child processes, as in a deployment.
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import pg from 'pg';
import { migrate } from '../../packages/platform/db/migrate.js';
import { databaseUrl, dropDatabase, uniqueName, waitFor } from './helpers.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const PRISMA_MIGRATE_LOCK = 72707369;
const url = databaseUrl(uniqueName('migratelock'));
const children = new Set<ReturnType<typeof spawn>>();
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await dropDatabase(url);
});

/** A process that migrates, says so, and stays alive (with whatever it left open) until killed. */
function migratingProcess() {
  const script = `
    import { migrate } from './packages/platform/db/migrate.ts';
    const applied = await migrate(${JSON.stringify(url)});
    console.log('migrated ' + applied.length);
    setInterval(() => {}, 60_000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  child.once('exit', (code) => (out += `\n[exited ${code}]`));
  return { child, migrated: () => waitFor(async () => /migrated \d+|exited/.test(out) && out, 60_000) };
}

/** Sessions holding Prisma's migration lock in the test database. */
async function lockHolders(): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
       WHERE l.locktype = 'advisory' AND l.objid = $1 AND l.granted AND d.datname = current_database()`,
      [PRISMA_MIGRATE_LOCK],
    );
    return r.rows[0].n;
  } finally {
    await c.end();
  }
}

it('a process that migrated holds no migration lock while it lives on; the next ones migrate, also concurrently', async () => {
  const first = migratingProcess();
  assert.match(await first.migrated(), /migrated [1-9]/, 'the first process applied the migrations');
  assert.equal(await lockHolders(), 0, "Prisma's advisory lock released although the process is still running");

  // After it, while it still lives: two at once (a second process and this one).
  const second = migratingProcess();
  const [here] = await Promise.all([migrate(url), second.migrated().then((o) => assert.match(o, /migrated 0/))]);
  assert.deepEqual(here, []);
  assert.equal(await lockHolders(), 0);
  for (const p of [first, second]) p.child.kill('SIGKILL');
});
