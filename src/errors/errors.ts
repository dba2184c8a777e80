// Expected failures, typed once. Every folder throws `ParleyError` with a stable `code` from the
// table below; the HTTP edge maps it to application/problem+json and the CLI to a one-line reason.
// This folder imports nothing and every other folder may import it.

/** The stable machine codes and the HTTP status each maps to. Add codes; never rename one. */
export const errorCodes = {
  validation_failed: 400,
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  storage_unavailable: 503,
  overloaded: 503,
  ops_unavailable: 503,
  internal: 500,
  config_invalid: 400,
  cli_usage: 400,
} as const;

/** One of the stable error codes. */
export type ErrorCode = keyof typeof errorCodes;

/** Human titles for problem+json, one per code. */
export const errorTitles: Record<ErrorCode, string> = {
  validation_failed: 'Your request is not valid',
  bad_request: 'Bad request',
  unauthorized: 'Not signed in',
  forbidden: 'Not allowed',
  not_found: 'Not found',
  conflict: 'Conflict',
  payload_too_large: 'Request too large',
  unsupported_media_type: 'Unsupported media type',
  rate_limited: 'Too many requests',
  storage_unavailable: 'Storage unavailable',
  overloaded: 'Overloaded',
  ops_unavailable: 'Monitoring is not answering',
  internal: 'Internal error',
  config_invalid: 'Configuration is not valid',
  cli_usage: 'Bad command line',
};

/** An expected failure with a stable code, a one-line detail and, for 429/503, a retry hint. */
export class ParleyError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterSeconds: number | undefined;
  readonly details: readonly string[] | undefined;

  constructor(
    code: ErrorCode,
    detail: string,
    options: { retryAfterSeconds?: number; details?: readonly string[]; cause?: unknown } = {},
  ) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ParleyError';
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.details = options.details;
  }

  /** The HTTP status this error answers with. */
  get status(): number {
    return errorCodes[this.code];
  }
}

/** True when `value` is a ParleyError (also across module copies). */
export function isParleyError(value: unknown): value is ParleyError {
  return value instanceof ParleyError || (value instanceof Error && value.name === 'ParleyError' && 'code' in value);
}
