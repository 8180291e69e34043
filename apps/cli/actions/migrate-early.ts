// What `serve` and `start` do first: the database step (create it if missing, then apply pending migrations, or find
// in one query that none is pending) is network round trips, so it runs while the service's modules load instead of
// after them; the caller awaits it before opening the platform (openPlatform with migrate: false).
import { migrate } from '../../../packages/platform/db/migrate.js';

/** Starts migrate(databaseUrl) now; await the result before the platform opens. */
export function migrateEarly(databaseUrl: string): Promise<string[]> {
  const running = migrate(databaseUrl);
  // The caller awaits it once its imports are done; until then a failure must not count as an unhandled rejection.
  running.catch(() => {});
  return running;
}
