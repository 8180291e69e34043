// Install and start-up promises that are not the build: onnxruntime-node's extra binaries are fetched only when
// ONNXRUNTIME_NODE_INSTALL asks (and not twice), npm is told which dependency install scripts to run (so it prints no
// list of unreviewed ones), there is no project .npmrc key npm does not know, and an old Node is refused with what
// to install.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeDir, tempDir } from '../../helpers/onnx-fixtures.js';

const ROOT = process.cwd();
const ORT = join(ROOT, 'node_modules', 'onnxruntime-node');

/** A copy of scripts/onnxruntime-install.mjs in a fake project whose onnxruntime-node installer only says it ran. */
function fakeProject() {
  const dir = tempDir('ort-install-');
  mkdirSync(join(dir, 'scripts'));
  copyFileSync(join(ROOT, 'scripts', 'onnxruntime-install.mjs'), join(dir, 'scripts', 'onnxruntime-install.mjs'));
  const ortScript = join(dir, 'node_modules', 'onnxruntime-node', 'script');
  mkdirSync(ortScript, { recursive: true });
  copyFileSync(join(ORT, 'script', 'install-metadata.js'), join(ortScript, 'install-metadata.js'));
  copyFileSync(join(ORT, 'script', 'install-metadata-versions.js'), join(ortScript, 'install-metadata-versions.js'));
  writeFileSync(
    join(ortScript, 'install.js'),
    "console.log('installer ran: ' + process.env.ONNXRUNTIME_NODE_INSTALL + ' in ' + process.cwd());\n",
  );
  return dir;
}

function install(dir: string, flag?: string) {
  const env = { ...process.env };
  delete env.ONNXRUNTIME_NODE_INSTALL;
  if (flag !== undefined) env.ONNXRUNTIME_NODE_INSTALL = flag;
  const r = spawnSync(process.execPath, [join(dir, 'scripts', 'onnxruntime-install.mjs')], { encoding: 'utf8', env });
  return { code: r.status, out: r.stdout + r.stderr };
}

test('onnxruntime-node install: nothing by default or with skip; its installer when asked; not twice', () => {
  const dir = fakeProject();
  try {
    assert.deepEqual(install(dir), { code: 0, out: '' });
    assert.deepEqual(install(dir, 'skip'), { code: 0, out: '' });
    const asked = install(dir, 'cuda12');
    assert.equal(asked.code, 0);
    assert.match(asked.out, /installer ran: cuda12 in .*onnxruntime-node/);
    if (process.platform === 'linux' && process.arch === 'x64') {
      // What an older npm leaves after running the package's own script: the CUDA provider files are there.
      const bin = join(dir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64');
      mkdirSync(bin, { recursive: true });
      for (const f of [
        'libonnxruntime_providers_cuda.so',
        'libonnxruntime_providers_shared.so',
        'libonnxruntime_providers_tensorrt.so',
      ])
        writeFileSync(join(bin, f), '');
      const again = install(dir, 'cuda12');
      assert.equal(again.code, 0);
      assert.match(again.out, /already installed/);
      assert.doesNotMatch(again.out, /installer ran/);
    }
  } finally {
    removeDir(dir);
  }
});

test('npm is told about every dependency install script, and no unknown project config key is set', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    allowScripts: Record<string, boolean>;
    scripts: Record<string, string>;
  };
  // Every installed package with an install-time script has a decision (npm >= 11.19 lists the others as a warning).
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { hasInstallScript?: boolean }>;
  };
  const withScripts = new Set(
    Object.entries(lock.packages)
      .filter(([k, v]) => k && v.hasInstallScript)
      .map(([k]) => k.slice(k.lastIndexOf('node_modules/') + 'node_modules/'.length)),
  );
  assert.ok(withScripts.has('onnxruntime-node'));
  assert.deepEqual([...withScripts].sort(), Object.keys(pkg.allowScripts).sort());
  assert.equal(pkg.allowScripts['onnxruntime-node'], false, 'its default downloads CUDA: run only when asked');
  assert.equal(pkg.scripts.postinstall, 'node scripts/onnxruntime-install.mjs');
  assert.equal(existsSync(join(ROOT, '.npmrc')), false, 'npm warns on every call about keys it does not know');
});

test('an older Node is refused at start with the version to install', () => {
  // Pretend to be Node 20.6 (what the README used to name) before the binary runs.
  const preload =
    'data:text/javascript,' +
    encodeURIComponent(
      "Object.defineProperty(process, 'versions', { value: { ...process.versions, node: '20.6.0' } });" +
        "Object.defineProperty(process, 'version', { value: 'v20.6.0' });",
    );
  const r = spawnSync(process.execPath, ['--import', preload, join(ROOT, 'bin', 'onnx-compress.mjs'), '--help'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /needs Node\.js 20\.19 or newer \(this is v20\.6\.0\)/);
  assert.equal(r.stdout, '');
});
