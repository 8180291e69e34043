// "This job is running right now, in a live process": a Postgres session-level advisory lock per running job, held
// by the worker on one dedicated connection for as long as its processor runs. Postgres drops the lock when the
// session ends, so a worker that dies (SIGKILL, OOM, lost network) releases it with no cleanup. The queue reconciler
// reads these locks to tell a job that is really running from one whose BullMQ entry vanished with a Redis wipe and
// whose worker is gone — state Redis itself cannot give once its data is lost.
import pg from 'pg';
import type { Db } from '../db/client.js';
import { connectionParts } from '../db/schema-engine.js';
import { rateLimitedErrorLog } from './redis.js';

/** 64-bit advisory-lock key of a job: the first 16 hex digits of its uuid (collisions would need 2^32 live jobs). */
export function jobLeaseKey(jobId: string): bigint {
  const hex = jobId.replace(/-/g, '').slice(0, 16);
  if (!/^[0-9a-f]{16}$/i.test(hex)) throw new Error(`not a uuid: ${jobId}`);
  return BigInt.asIntN(64, BigInt(`0x${hex}`));
}

export class JobLeases {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  /** Held by this process: an advisory lock is re-entrant within its session, so a second hold here must say no. */
  private readonly held = new Set<string>();
  private readonly log = rateLimitedErrorLog('job-lease connection');

  constructor(private readonly databaseUrl: string) {}

  private connect(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const client = new pg.Client(connectionParts(this.databaseUrl));
      // A dropped session loses its locks; forget them so the next hold reconnects (and an unheard 'error' would
      // crash the process).
      client.on('error', (e) => {
        this.log.error(e);
        if (this.client === client) this.client = undefined;
        this.held.clear();
      });
      client.on('end', () => {
        if (this.client === client) this.client = undefined;
        this.held.clear();
      });
      try {
        await client.connect();
      } catch (e) {
        this.connecting = undefined;
        throw e;
      }
      this.client = client;
      this.connecting = undefined;
      return client;
    })();
    return this.connecting;
  }

  /** Takes the job's lease; false when another process (or this one) holds it. */
  async hold(jobId: string): Promise<boolean> {
    if (this.held.has(jobId)) return false;
    this.held.add(jobId); // claimed before the await: two concurrent holds in this process cannot both win
    try {
      const client = await this.connect();
      const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [
        jobLeaseKey(jobId).toString(),
      ]);
      if (!r.rows[0].ok) this.held.delete(jobId);
      return r.rows[0].ok;
    } catch (e) {
      this.held.delete(jobId);
      throw e;
    }
  }

  /**
   * Takes the job's lease, waiting (checking every `pollMs`) while another live session holds it. Returns false only
   * when `stop` says to give up first (the worker is closing, BullMQ cancelled the job).
   */
  async holdWhenFree(
    jobId: string,
    opts: { pollMs: number; stop?: () => boolean; onWait?: () => void },
  ): Promise<boolean> {
    for (let first = true; ; first = false) {
      if (await this.hold(jobId)) return true;
      if (first) opts.onWait?.();
      if (opts.stop?.()) return false;
      await new Promise((r) => setTimeout(r, opts.pollMs));
    }
  }

  async release(jobId: string): Promise<void> {
    if (!this.held.delete(jobId)) return;
    const client = this.client;
    if (!client) return; // the session is gone, and its locks with it
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [jobLeaseKey(jobId).toString()]).catch(() => {});
  }

  async close(): Promise<void> {
    const client = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    this.held.clear();
    await client?.end().catch(() => {});
  }
}

/** The ids among `jobIds` whose lease some live session holds (in the database `db` points at). */
export async function heldJobLeases(db: Db, jobIds: string[]): Promise<Set<string>> {
  if (jobIds.length === 0) return new Set();
  // A bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits), objsubid 1.
  const rows = await db.$queryRaw<{ hi: string; lo: string }[]>`
    SELECT classid::text AS hi, objid::text AS lo FROM pg_locks
    WHERE locktype = 'advisory' AND objsubid = 1 AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;
  const locked = new Set(rows.map((r) => BigInt.asIntN(64, (BigInt(r.hi) << 32n) | BigInt(r.lo))));
  return new Set(jobIds.filter((id) => locked.has(jobLeaseKey(id))));
}
