/**
 * DAPO's soft overlong punishment (Yu et al. 2025, Eq. 13), added to a response's reward: none up
 * to maxLength − buffer tokens, then a linear ramp to −penalty at maxLength, −penalty beyond:
 *
 *   R_len(L) = 0                                   L ≤ maxLength − buffer
 *            = (maxLength − buffer − L) / buffer · penalty   maxLength − buffer < L ≤ maxLength
 *            = −penalty                            L > maxLength
 */
import { checkInt, checkNumber, checkObject } from '../validate.js';

export interface OverlongOptions {
  /** length where the penalty is full (tokens) */
  maxLength: number;
  /** tokens before maxLength where the ramp starts (>= 1, <= maxLength) */
  buffer: number;
  /** the full penalty (default 1) */
  penalty?: number;
}

export function overlongPenalty(length: number, opts: OverlongOptions): number {
  const fn = 'overlongPenalty';
  checkInt(fn, 'length', length, { min: 0 });
  const o = checkObject(fn, 'options', opts);
  const maxLength = checkInt(fn, 'options.maxLength', o.maxLength, { min: 1 });
  const buffer = checkInt(fn, 'options.buffer', o.buffer, { min: 1, max: maxLength });
  const penalty = o.penalty === undefined ? 1 : checkNumber(fn, 'options.penalty', o.penalty, { min: 0 });
  if (length <= maxLength - buffer) return 0;
  if (length > maxLength) return -penalty;
  return ((maxLength - buffer - length) / buffer) * penalty;
}
