// One test for "the disk is full": the API answers it as a 507 problem and the worker retries the job later,
// so both must agree on which errors mean out of space.

/** The file system is out of space or quota (staging, worker scratch or the storage directory). */
export function isOutOfSpace(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
