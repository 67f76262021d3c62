/**
 * Calling the judge (docs/algorithms.md §5.3): every call is retried until its reply parses, the first
 * attempt at temperature 0.01 (near-greedy), each retry at 0.95 (so that a retry can produce a
 * different reply), at most `maxAttempts` times.
 */
import { ErrorCode, RlhfError } from '../../errors.js';
import { checkInt, show, typeError } from '../../validate.js';
import type { JudgeModel } from './types.js';

/** Temperature of the first attempt. */
export const FIRST_TEMPERATURE = 0.01;
/** Temperature of every retry. */
export const RETRY_TEMPERATURE = 0.95;
/** Default number of attempts per judge call. */
export const DEFAULT_MAX_ATTEMPTS = 5;

/** Thrown by {@link judgeWithRetry} when no reply parsed: code `ERR_RLHF_FORMAT`, with the attempts and last reply. */
export class JudgeRetryError extends RlhfError {
  constructor(
    message: string,
    readonly attempts: number,
    readonly lastReply: unknown,
  ) {
    super(ErrorCode.FORMAT, message);
  }
}

/** Extra options of {@link judgeWithRetry}. */
export interface JudgeRetryOptions {
  /** Passed to the judge as a generation-length hint. */
  maxTokens?: number;
  /** What is being asked for, for the error message (default "a parseable reply"). */
  what?: string;
}

/**
 * Asks `judge` with `prompt` until `parse(reply)` returns something other than `undefined`, and
 * returns that. Attempt 1 uses temperature 0.01, attempts 2..maxAttempts 0.95. After maxAttempts
 * unparseable replies it throws a {@link JudgeRetryError} (an `RlhfError` with code
 * `ERR_RLHF_FORMAT`) naming the attempts and quoting the last reply. Errors thrown by the judge
 * itself (transport, quota) are not retried: they propagate.
 */
export async function judgeWithRetry<T>(
  judge: JudgeModel,
  prompt: string,
  parse: (reply: string) => T | undefined,
  maxAttempts: number = DEFAULT_MAX_ATTEMPTS,
  options: JudgeRetryOptions = {},
): Promise<T> {
  const fn = 'judgeWithRetry';
  if (judge === null || typeof judge !== 'object' || typeof judge.complete !== 'function')
    throw typeError(fn, 'judge', 'a JudgeModel (an object with a complete(prompt, options) method)', judge);
  if (typeof prompt !== 'string') throw typeError(fn, 'prompt', 'a string', prompt);
  if (typeof parse !== 'function') throw typeError(fn, 'parse', 'a function', parse);
  checkInt(fn, 'maxAttempts', maxAttempts, { min: 1 });
  let last: unknown;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const temperature = attempt === 1 ? FIRST_TEMPERATURE : RETRY_TEMPERATURE;
    const callOptions =
      options.maxTokens === undefined ? { temperature } : { temperature, maxTokens: options.maxTokens };
    last = await judge.complete(prompt, callOptions);
    if (typeof last !== 'string') continue; // a client returning null/undefined for "no text": retry
    const value = parse(last);
    if (value !== undefined) return value;
  }
  const temps =
    maxAttempts === 1 ? `${FIRST_TEMPERATURE}` : `${FIRST_TEMPERATURE}, then ${RETRY_TEMPERATURE} x${maxAttempts - 1}`;
  throw new JudgeRetryError(
    `${fn}: the judge gave no ${options.what ?? 'parseable reply'} in ${maxAttempts} attempt${maxAttempts === 1 ? '' : 's'} ` +
      `(temperature ${temps}); last reply: ${show(last)}`,
    maxAttempts,
    last,
  );
}

/**
 * Fills `{{name}}` placeholders in one pass, so text inserted for one placeholder (a document that
 * happens to contain "{{answer}}") is never substituted again. Unknown placeholders stay as they are.
 */
export function fillTemplate(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (whole, name: string) =>
    Object.hasOwn(values, name) ? values[name] : whole,
  );
}

/** A counting semaphore that caps how many judge calls run at once. */
export class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next)
        next(); // hand the slot over without releasing it
      else this.active--;
    }
  }
}
