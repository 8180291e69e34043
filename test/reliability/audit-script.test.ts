// scripts/audit.mjs must never report an audit it could not run as a pass: with a stand-in `npm` first on PATH
// (answers recorded from real npm runs), a clean tree exits 0, a high advisory 1, the registry's 405 (what this
// environment's registry answers) 2 with "NOT RUN".
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

const SCRIPT = new URL('../../scripts/audit.mjs', import.meta.url).pathname;
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oc-audit-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const clean = {
  vulnerabilities: {},
  metadata: { vulnerabilities: { info: 0, low: 0, moderate: 0, high: 0, critical: 0 } },
};
const high = {
  vulnerabilities: { 'some-pkg': { severity: 'high', range: '<1.2.3', fixAvailable: true } },
  metadata: { vulnerabilities: { info: 0, low: 0, moderate: 0, high: 1, critical: 0 } },
};
const refused = {
  message: '405 Method Not Allowed - POST https://registry.npmjs.org/-/npm/v1/security/advisories/bulk',
  statusCode: 405,
  error: { summary: '', detail: '' },
};

/** Runs the script with a fake npm whose `audit --json` prints `auditJson` and whose `audit signatures` passes. */
async function run(auditJson: object, auditExit: number) {
  const fake = join(dir, 'npm');
  await writeFile(
    fake,
    `#!/bin/sh\nif [ "$2" = "signatures" ]; then echo "audited 12 packages: 12 have verified registry signatures"; exit 0; fi\n` +
      `cat <<'JSON'\n${JSON.stringify(auditJson)}\nJSON\nexit ${auditExit}\n`,
  );
  await chmod(fake, 0o755);
  return spawnSync(process.execPath, [SCRIPT], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${dir}${delimiter}${process.env.PATH}` },
  });
}

it('exit 0 when clean, 1 on an advisory at or above the level, 2 (NOT RUN) when the registry refuses', async () => {
  const ok = await run(clean, 0);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /high 0, critical 0 \(0 at or above moderate\)/);

  const bad = await run(high, 1);
  assert.equal(bad.status, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout, /high\s+some-pkg <1\.2\.3 \(fix available\)/);

  const notRun = await run(refused, 1);
  assert.equal(notRun.status, 2, notRun.stdout + notRun.stderr);
  assert.match(notRun.stdout, /NOT RUN \(advisory endpoint unavailable: 405 Method Not Allowed/);
});
