// The engine's version (package.json), written into every report.
import { readFileSync } from 'node:fs';

export const ENGINE_VERSION: string = (() => {
  // The repository's package.json: three folders up from this source, four from its compiled copy under dist/.
  const pkg = new URL(
    import.meta.url.endsWith('.js') ? '../../../../package.json' : '../../../package.json',
    import.meta.url,
  );
  try {
    return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();
