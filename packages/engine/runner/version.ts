// The engine's version (package.json), written into every report.
import { readFileSync } from 'node:fs';

export const ENGINE_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string })
      .version;
  } catch {
    return 'unknown';
  }
})();
