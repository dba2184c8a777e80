// Where a database failure came from, for metrics and alerts that name the dependency: which node,
// which pool (primary or read), and the cause (timeout, refused, breaker-open, shed, lost, ...).
// Attached to the error object itself, so it travels with the error through chat/ to api/.

/** What is known of a failure's origin. */
export interface FailureOrigin {
  node: string;
  pool: 'primary' | 'read' | 'none';
  cause: string;
}

const origins = new WeakMap<object, FailureOrigin>();

/** Adds what is known to `error` (earlier facts win over later, vaguer ones) and returns it. */
export function noteFailure<E>(error: E, origin: Partial<FailureOrigin>): E {
  if (typeof error !== 'object' || error === null) return error;
  const known = origins.get(error);
  origins.set(error, {
    node: known?.node && known.node !== 'none' ? known.node : origin.node ?? 'none',
    pool: known?.pool && known.pool !== 'none' ? known.pool : origin.pool ?? 'none',
    cause: known?.cause ?? origin.cause ?? causeOf(error),
  });
  return error;
}

/** The origin of a database failure, or undefined for errors that did not come from data/. */
export function failureOrigin(error: unknown): FailureOrigin | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  return origins.get(error);
}

// The driver's code behind a storage_unavailable, as a short cause.
function causeOf(error: object): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? '';
  const message = cause?.message ?? (error as Error).message ?? '';
  if (code === '57014' || /timeout|timed out/i.test(message)) return 'timeout';
  if (code === 'ECONNREFUSED' || code === '57P03' || /refused/i.test(message)) return 'refused';
  if (code === '25006' || /recovery|read-only/i.test(message)) return 'read-only';
  if (/terminat|Connection ended|ECONNRESET|EPIPE/i.test(message + code)) return 'lost';
  if ((error as { code?: string }).code === 'overloaded') return 'shed';
  return 'other';
}
