/**
 * Errors raised by the engine. Argument errors are plain `TypeError` (wrong kind of value) and
 * `RangeError` (bad magnitude or shape) whose message names the parameter path; every other
 * failure is an {@link RlhfError} with a stable `code`. Native errors carry the same codes.
 */

/** Engine error codes, in the order of native/core/error.h (a test compares the two lists). */
export const ErrorCode = {
  INVALID_ARGUMENT: 'ERR_RLHF_INVALID_ARGUMENT',
  OUT_OF_RANGE: 'ERR_RLHF_OUT_OF_RANGE',
  OUT_OF_MEMORY: 'ERR_RLHF_OUT_OF_MEMORY',
  IO: 'ERR_RLHF_IO',
  FORMAT: 'ERR_RLHF_FORMAT',
  UNSUPPORTED: 'ERR_RLHF_UNSUPPORTED',
  BUSY: 'ERR_RLHF_BUSY',
  DISPOSED: 'ERR_RLHF_DISPOSED',
  INTERNAL: 'ERR_RLHF_INTERNAL',
  /** a call the object's current state does not allow, e.g. Model.backward() twice after one forward */
  INVALID_STATE: 'ERR_RLHF_INVALID_STATE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** An engine failure that is not a bad argument: I/O, file format, busy object, disposed object... */
export class RlhfError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RlhfError';
    this.code = code;
  }
}

/**
 * Runs an async native call so that a rejection carries the *caller's* stack (captured here,
 * synchronously, before the hop to the worker thread) instead of an anonymous microtask. The
 * error keeps its class, message and `code`.
 */
export async function withCallerStack<T>(call: () => Promise<T>): Promise<T> {
  const site = new Error();
  try {
    return await call();
  } catch (err) {
    throw relocate(err, site);
  }
}

/** Same for synchronous calls into native code. */
export function relocate(err: unknown, site: Error): unknown {
  if (err instanceof Error && site.stack) {
    const frames = site.stack.split('\n').slice(2).join('\n');
    err.stack = `${err.name}: ${err.message}\n${frames}`;
  }
  return err;
}
