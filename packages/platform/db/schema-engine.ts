// Prisma's schema engine compiled to WebAssembly, driven through the pg driver adapter. This is how the service
// applies migrations offline: the native schema-engine binary is a download the CLI makes on first use, and
// `prisma migrate deploy` with PRISMA_SCHEMA_ENGINE_BINARY pointing elsewhere reports success without applying
// anything. The wasm module shipped in the `prisma` package (same engine version as the CLI) is loaded with the JS
// glue of @prisma/schema-engine-wasm.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';
import type { SchemaEngine as SchemaEngineType } from '@prisma/schema-engine-wasm';

export type SchemaEngine = SchemaEngineType;

const require = createRequire(import.meta.url);
const PG_CHAR_OID = 18; // Postgres' internal one-byte "char" type (pg_class.relkind, …)
const PG_TEXT_OID = 25;

/** A file inside an installed package (the `prisma` package exports no path to its wasm). */
function packageFile(pkg: string, file: string): string {
  for (const dir of require.resolve.paths(pkg) ?? []) {
    const candidate = join(dir, pkg, file);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`${pkg}/${file} not found: is the "${pkg}" package installed?`);
}

// The project's lib setting has no WebAssembly types (no DOM lib); the two calls used are typed here.
const Wasm = (
  globalThis as unknown as {
    WebAssembly: {
      instantiate(bytes: Uint8Array, imports: object): Promise<{ instance: { exports: Record<string, unknown> } }>;
    };
  }
).WebAssembly;

let glue: Promise<typeof import('@prisma/schema-engine-wasm')> | undefined;

/** Instantiates the wasm module once per process (Node 20 cannot `import` .wasm files, so the glue's entry is bypassed). */
function loadGlue(): Promise<typeof import('@prisma/schema-engine-wasm')> {
  glue ??= (async () => {
    const gluePath = join(dirname(require.resolve('@prisma/schema-engine-wasm')), 'schema_engine_bg.js');
    const bg = (await import(gluePath)) as typeof import('@prisma/schema-engine-wasm') & {
      __wbg_set_wasm(exports: Record<string, unknown>): void;
    };
    const wasmPath = packageFile('prisma', 'build/schema_engine_bg.wasm');
    const { instance } = await Wasm.instantiate(await readFile(wasmPath), { './schema_engine_bg.js': bg });
    bg.__wbg_set_wasm(instance.exports);
    (instance.exports.__wbindgen_start as () => void)();
    return bg;
  })();
  return glue;
}

interface PgConnectionParts {
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
}

export function connectionParts(databaseUrl: string): PgConnectionParts {
  const u = new URL(databaseUrl);
  return {
    host: decodeURIComponent(u.hostname) || '127.0.0.1',
    port: Number(u.port || 5432),
    user: decodeURIComponent(u.username) || 'postgres',
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database: decodeURIComponent(u.pathname.slice(1)) || 'postgres',
  };
}

type Adapter = Awaited<ReturnType<PrismaPg['connect']>>;

/**
 * adapter-pg 7.10.1 throws "Unsupported column type char" on the catalogue queries the schema engine runs; report
 * that column type as text (the values already arrive as strings).
 */
function mapCharColumnsToText(adapter: Adapter): Adapter {
  const queryable = adapter as unknown as {
    performIO(q: unknown): Promise<{ fields: { dataTypeID: number }[] }>;
    startTransaction(isolation?: unknown): Promise<unknown>;
  };
  const wrapIO = (target: typeof queryable) => {
    const performIO = target.performIO.bind(target);
    target.performIO = async (q) => {
      const result = await performIO(q);
      for (const f of result.fields) if (f.dataTypeID === PG_CHAR_OID) f.dataTypeID = PG_TEXT_OID;
      return result;
    };
  };
  wrapIO(queryable);
  const startTransaction = queryable.startTransaction.bind(queryable);
  queryable.startTransaction = async (isolation) => {
    const tx = (await startTransaction(isolation)) as typeof queryable;
    wrapIO(tx);
    return tx;
  };
  return adapter;
}

/**
 * A migration-aware adapter factory with two adapter-pg 7.10.1 bugs worked around: its shadow database config,
 * built from a connection string, keeps pointing at the main database (so the shadow pool gets host/port/user/
 * database separately here), and its cleanup drops the shadow database while the pool is still open (so the pool is
 * closed first and the database dropped WITH (FORCE)).
 */
function adapterFactory(databaseUrl: string, opened: Adapter[]) {
  const parts = connectionParts(databaseUrl);
  const main = new PrismaPg({ ...parts });
  return {
    provider: 'postgres' as const,
    adapterName: main.adapterName,
    connect: async () => {
      const adapter = mapCharColumnsToText(await main.connect());
      opened.push(adapter);
      return adapter;
    },
    connectToShadowDb: async () => {
      const database = `prisma_shadow_${crypto.randomUUID().replace(/-/g, '')}`;
      await adminQuery(parts, `CREATE DATABASE "${database}"`);
      const shadow = new PrismaPg({ ...parts, database });
      const adapter = mapCharColumnsToText(await shadow.connect());
      const dispose = adapter.dispose.bind(adapter);
      (adapter as { dispose: () => Promise<void> }).dispose = async () => {
        await dispose();
        await adminQuery(parts, `DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
      };
      return adapter;
    },
  };
}

/** Runs one statement on the maintenance database `postgres` (CREATE/DROP DATABASE cannot run inside the target). */
export async function adminQuery(parts: PgConnectionParts, sql: string, values?: unknown[]): Promise<pg.QueryResult> {
  const client = new pg.Client({ ...parts, database: 'postgres' });
  await client.connect();
  try {
    return await client.query(sql, values);
  } finally {
    await client.end();
  }
}

/** A schema engine and what it opened; `close()` frees the engine and ends its connections. */
export interface OpenedSchemaEngine {
  engine: SchemaEngine;
  close(): Promise<void>;
}

/**
 * Opens a schema engine on `databaseUrl` with the given Prisma schema. Call `close()` when done: `engine.free()`
 * alone leaves the engine's pool open, and in it the session that took Prisma's migration advisory lock (72707369)
 * and never unlocks it (the native engine's process exit would); another process migrating then waits for it.
 */
export async function openSchemaEngine(
  databaseUrl: string,
  schema: { path: string; content: string },
  log: (line: string) => void = () => {},
): Promise<OpenedSchemaEngine> {
  const bg = await loadGlue();
  const opened: Adapter[] = [];
  const factory = bindMigrationAwareSqlAdapterFactory(adapterFactory(databaseUrl, opened) as never);
  const engine = await bg.SchemaEngine.new({ datamodels: [[schema.path, schema.content]] }, log, factory);
  return {
    engine,
    async close() {
      engine.free();
      await Promise.all(opened.splice(0).map((a) => a.dispose().catch(() => {})));
    },
  };
}
