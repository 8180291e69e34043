#!/usr/bin/env node
// Dependency audit: `npm audit --omit=dev` (what ships) and, with --all, the dev tree too; then `npm audit signatures`
// (registry signatures and provenance of what is installed). Where the registry does not serve the advisory endpoint
// (a mirror answering 405, no network) the audit is reported as NOT RUN with exit code 2 — never as a pass — so CI
// can tell "no known vulnerabilities" (0) from "vulnerabilities" (1) from "could not check" (2).
//   node scripts/audit.mjs [--all] [--level low|moderate|high|critical] [--skip-signatures]
// Pinned versions and why they are pinned: docs/RELIABILITY.md, "Dependency audit".
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
const all = args.includes('--all');
const levelAt = args.indexOf('--level');
const level = levelAt >= 0 ? args[levelAt + 1] : 'moderate';
const LEVELS = ['info', 'low', 'moderate', 'high', 'critical'];
if (!LEVELS.includes(level)) {
  console.error(`--level must be one of ${LEVELS.join(', ')}`);
  process.exit(64);
}

const npm = (argv) => {
  const r = spawnSync('npm', argv, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return {
    status: r.status,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '').replace(/^npm warn Unknown project.*\n/gm, ''),
  };
};

/** The endpoint did not answer with an audit (405/404 from a mirror, DNS/network failure): not a verdict. */
const unavailable = (text) =>
  /405 Method Not Allowed|404 Not Found|audit endpoint returned an error|ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN|network request/i.test(
    text,
  );

let notRun = 0;
let failed = 0;

const audit = npm(['audit', '--json', ...(all ? [] : ['--omit=dev']), `--audit-level=${level}`]);
let report;
try {
  report = JSON.parse(audit.stdout);
} catch {
  report = undefined;
}
if (!report?.metadata?.vulnerabilities) {
  // npm --json puts a failed request in stdout ({message, statusCode, error}); other failures only in stderr.
  const why = (report?.message || report?.error?.summary || audit.stderr || `exit ${audit.status}`)
    .trim()
    .split('\n')
    .slice(0, 3)
    .join(' / ');
  console.log(
    `npm audit${all ? '' : ' --omit=dev'}: NOT RUN (${unavailable(why) ? 'advisory endpoint unavailable' : 'error'}: ${why})`,
  );
  notRun++;
} else {
  const v = report.metadata.vulnerabilities;
  const counted = LEVELS.slice(LEVELS.indexOf(level)).reduce((n, l) => n + (v[l] ?? 0), 0);
  console.log(
    `npm audit${all ? '' : ' --omit=dev'}: ${LEVELS.map((l) => `${l} ${v[l] ?? 0}`).join(', ')} ` +
      `(${counted} at or above ${level})`,
  );
  for (const [name, vuln] of Object.entries(report.vulnerabilities ?? {})) {
    if (LEVELS.indexOf(vuln.severity) >= LEVELS.indexOf(level)) {
      console.log(
        `  ${vuln.severity.padEnd(8)} ${name} ${vuln.range ?? ''}${vuln.fixAvailable ? ' (fix available)' : ''}`,
      );
    }
  }
  if (counted > 0) failed++;
}

if (!args.includes('--skip-signatures')) {
  const sig = npm(['audit', 'signatures']);
  const text = `${sig.stdout}\n${sig.stderr}`;
  if (sig.status === 0) {
    console.log(`npm audit signatures: ${sig.stdout.trim().split('\n').slice(0, 3).join(' / ')}`);
  } else if (unavailable(text)) {
    console.log(
      `npm audit signatures: NOT RUN (${
        text
          .trim()
          .split('\n')
          .find((l) => /error/.test(l)) ?? 'unavailable'
      })`,
    );
    notRun++;
  } else {
    console.log(`npm audit signatures: FAILED\n${text.trim()}`);
    failed++;
  }
}

process.exit(failed ? 1 : notRun ? 2 : 0);
