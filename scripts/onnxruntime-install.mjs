#!/usr/bin/env node
// The root package's `postinstall`: installs onnxruntime-node's extra binaries (on Linux x64, the CUDA execution
// provider, from NuGet) when ONNXRUNTIME_NODE_INSTALL asks for them — `ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci` on a
// GPU worker (README, "GPU").
//
// Why not onnxruntime-node's own install script: given no flag, it downloads the CUDA libraries on every Linux x64
// install, which a CPU machine does not need and an offline one cannot make. package.json's `allowScripts` denies it,
// and npm ≥ 11.19 runs no dependency install script that `allowScripts` does not allow; this script runs the
// package's installer only when asked. An older npm ignores `allowScripts` and runs the package's script itself
// (which reads the same variable): the files are then present already and this does nothing.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const flag = process.env.ONNXRUNTIME_NODE_INSTALL;
if (!flag || flag === 'skip') process.exit(0); // the CPU build, bundled in the package: nothing to fetch

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = join(root, 'node_modules', 'onnxruntime-node');
const installer = join(dir, 'script', 'install.js');
if (!existsSync(installer)) process.exit(0); // not installed (an install that left it out): nothing to add to

// Skip what is there already (an older npm ran the package's own script): the installer itself re-downloads when
// given a flag.
const meta = createRequire(import.meta.url)(join(dir, 'script', 'install-metadata.js'));
const platform = `${process.platform}/${process.arch}`;
const names = ['true', '1', 'ON'].includes(flag)
  ? (meta.requirements[platform] ?? [])
  : flag.split(',').map((s) => s.trim());
const files = names.flatMap((n) => Object.keys(meta.manifests[`${platform}:${n}`] ?? {}));
const binDir = join(dir, 'bin', 'napi-v6', process.platform, process.arch);
if (files.length && files.every((f) => existsSync(join(binDir, f)))) {
  console.log(`onnxruntime-node: ${names.join(', ')} binaries already installed`);
  process.exit(0);
}
const r = spawnSync(process.execPath, [installer], { cwd: dir, stdio: 'inherit', env: process.env });
process.exit(r.status ?? 1);
