// One typed error for everything that is wrong with a model file or a request against it. Callers (CLI, worker, API)
// recognise it by `name` and `code`, so it survives crossing a worker/process boundary as plain data.

/** Machine-readable reasons; each bad-input class has its own code so tests and callers can tell them apart. */
export type OnnxErrorCode =
  | 'empty-file'
  | 'not-protobuf'
  | 'truncated'
  | 'not-a-model'
  | 'file-too-large'
  | 'dims-too-large'
  | 'raw-data-size-mismatch'
  | 'external-absolute-path'
  | 'external-path-traversal'
  | 'external-symlink-escape'
  | 'external-hard-link'
  | 'external-not-a-file'
  | 'external-out-of-range'
  | 'external-missing'
  | 'external-invalid'
  | 'function-recursion'
  | 'graph-too-deep'
  | 'too-large-for-inline'
  | 'unsupported-dtype'
  | 'not-found'
  | 'invalid-argument'
  | 'unknown-type'
  | 'opset-upgrade-unsafe'
  | 'model-changed'
  | 'io-error';

export class OnnxError extends Error {
  override name = 'OnnxError';
  constructor(
    readonly code: OnnxErrorCode | (string & {}),
    message: string,
  ) {
    super(message);
  }
}

/** True for an OnnxError, also one that crossed a worker boundary (structured clone drops the prototype). */
export function isOnnxError(e: unknown): e is OnnxError {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'OnnxError';
}
