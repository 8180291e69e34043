// Prisma CLI configuration (Prisma 7 reads the database URL from here, not from schema.prisma). The service itself
// applies migrations through packages/platform/db/migrate.ts, which works offline; this file serves the CLI
// (`prisma generate`, and `prisma migrate deploy` where the schema-engine binary can be installed).
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/onnx_compress' },
});
