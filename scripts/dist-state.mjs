// Which runtime sources dist/ is built from, and whether dist/ is current: shared by scripts/build.mjs (which writes
// the stamp) and bin/onnx-compress.mjs (which runs dist/ only when it is current, so an edited source is never
// shadowed by an old build). Plain JavaScript with no imports beyond node: — the bin loads it on every start.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const DIST = 'dist';
export const STAMP = join(DIST, '.build.json');
/** Folders whose .ts and .mjs files make up what the CLI, the API and the workers run. */
const SOURCE_DIRS = ['apps', 'packages', 'workers', join('prisma', 'generated')];

/** Every runtime source file (relative paths, sorted) and the newest modification time among them. */
export function sourceFiles(root) {
  const sources = [];
  let newest = 0;
  const walk = (rel) => {
    let entries;
    try {
      entries = readdirSync(join(root, rel), { withFileTypes: true });
    } catch {
      return; // absent (an install without the sources)
    }
    for (const e of entries) {
      const p = join(rel, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'node_modules') walk(p);
      } else if ((e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) || e.name.endsWith('.mjs')) {
        sources.push(p);
        newest = Math.max(newest, statSync(join(root, p)).mtimeMs);
      }
    }
  };
  for (const d of SOURCE_DIRS) walk(d);
  sources.sort();
  return { sources, newest };
}

/** dist/ is current when its stamp names the same number of sources and none is newer than the build. */
export function distState(root) {
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(join(root, STAMP), 'utf8'));
  } catch {
    return { current: false, reason: 'not built (node scripts/build.mjs)' };
  }
  const now = sourceFiles(root);
  if (now.sources.length !== stamp.count) return { current: false, reason: 'source files were added or removed' };
  if (now.newest > stamp.newest) return { current: false, reason: 'a source file changed after the build' };
  return { current: true, reason: '' };
}
