// The error catalogue: every problem the API reports, with its HTTP status and title, in one place. Responses are
// RFC 9457 problem+json ({type, title, status, detail, instance, code, errors?}); 5xx details are never sent.

export const PROBLEMS = {
  'validation-failed': { status: 400, title: 'The request is not valid' },
  'recipe-invalid': { status: 422, title: 'The recipe is not valid' },
  'invalid-model': { status: 422, title: 'The uploaded file is not a usable ONNX model' },
  'invalid-dataset': { status: 422, title: 'The uploaded file is not a usable dataset' },
  'dataset-mismatch': { status: 422, title: 'The dataset does not fit the model' },
  'calibration-required': { status: 422, title: 'The recipe needs calibration data' },
  'idempotency-key-reused': { status: 422, title: 'The Idempotency-Key was used with a different request' },
  unauthorized: { status: 401, title: 'Authentication required' },
  forbidden: { status: 403, title: 'Not allowed' },
  'not-found': { status: 404, title: 'Not found' },
  'model-not-found': { status: 404, title: 'Model not found' },
  'dataset-not-found': { status: 404, title: 'Dataset not found' },
  'job-not-found': { status: 404, title: 'Job not found' },
  'artifact-not-found': { status: 404, title: 'Artifact not found' },
  'method-not-allowed': { status: 405, title: 'Method not allowed' },
  'job-not-cancellable': { status: 409, title: 'The job has already finished' },
  'job-active': { status: 409, title: 'The job is still queued or running; cancel it first' },
  'model-in-use': { status: 409, title: 'Jobs still refer to this model' },
  'upload-too-large': { status: 413, title: 'The upload exceeds the size limit' },
  'unsupported-media-type': { status: 415, title: 'Unsupported content type' },
  'range-not-satisfiable': { status: 416, title: 'The requested range is not satisfiable' },
  'rate-limited': { status: 429, title: 'Too many requests' },
  internal: { status: 500, title: 'Internal server error' },
  'artifact-corrupt': { status: 500, title: 'The stored artifact failed its integrity check' },
  unavailable: { status: 503, title: 'A dependency is unavailable' },
  'insufficient-storage': { status: 507, title: 'Not enough storage space' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemCode = keyof typeof PROBLEMS;

export interface ProblemIssue {
  /** JSON pointer into the request (or the recipe). */
  path: string;
  message: string;
}

/** An expected failure a handler reports; the error handler renders it. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly code: ProblemCode,
    readonly detail?: string,
    readonly errors?: ProblemIssue[],
    readonly headers?: Record<string, string>,
  ) {
    super(detail ?? PROBLEMS[code].title);
  }
  get status(): number {
    return PROBLEMS[this.code].status;
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  code: ProblemCode;
  errors?: ProblemIssue[];
}

export function problem(
  code: ProblemCode,
  opts: { detail?: string; instance?: string; errors?: ProblemIssue[] } = {},
): Problem {
  const p: Problem = {
    type: `urn:onnx-compress:problem:${code}`,
    title: PROBLEMS[code].title,
    status: PROBLEMS[code].status,
    code,
  };
  if (opts.detail !== undefined) p.detail = opts.detail;
  if (opts.instance !== undefined) p.instance = opts.instance;
  if (opts.errors?.length) p.errors = opts.errors;
  return p;
}
