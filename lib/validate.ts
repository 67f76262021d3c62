/**
 * Path-aware argument checks. Every public function validates its arguments here before calling
 * native code, so a bad value is reported in TS with the parameter's path:
 *
 *   AdamW: expected options.lr to be a finite number > 0, received -1
 *
 * `TypeError` for the wrong kind of value, `RangeError` for a bad magnitude or shape. The helpers
 * that take `(obj, key)` read the value themselves, so the reported name and value cannot drift.
 */

/** A short, safe rendering of a received value for error messages. */
export function show(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as unknown as { length: number }).length})`;
  if (Array.isArray(value)) return `array(${value.length})`;
  if (typeof value === 'function') return 'a function';
  return `an object (${Object.prototype.toString.call(value).slice(8, -1)})`;
}

function message(fn: string, path: string, expectation: string, value: unknown): string {
  return `${fn}: expected ${path} to be ${expectation}, received ${show(value)}`;
}

export function typeError(fn: string, path: string, expectation: string, value: unknown): TypeError {
  return new TypeError(message(fn, path, expectation, value));
}

export function rangeError(fn: string, path: string, expectation: string, value: unknown): RangeError {
  return new RangeError(message(fn, path, expectation, value));
}

export interface NumberBounds {
  /** inclusive bounds */
  min?: number;
  max?: number;
  /** exclusive bounds */
  gt?: number;
  lt?: number;
  /** allow +/-Infinity (default false: finite only) */
  allowInfinity?: boolean;
  /**
   * the value goes to native code as a float32: a finite value must stay finite there
   * (|x| <= FLOAT32_MAX; 1e39 is finite in JS and Infinity as a float32)
   */
  float32?: boolean;
}

/** The largest finite float32, 3.4028234663852886e+38. */
export const FLOAT32_MAX = 3.4028234663852886e38;

function describeBounds(b: NumberBounds): string {
  const parts: string[] = [];
  if (b.min !== undefined) parts.push(`>= ${b.min}`);
  if (b.gt !== undefined) parts.push(`> ${b.gt}`);
  if (b.max !== undefined) parts.push(`<= ${b.max}`);
  if (b.lt !== undefined) parts.push(`< ${b.lt}`);
  return parts.join(' and ');
}

function inBounds(v: number, b: NumberBounds): boolean {
  return (
    (b.min === undefined || v >= b.min) &&
    (b.max === undefined || v <= b.max) &&
    (b.gt === undefined || v > b.gt) &&
    (b.lt === undefined || v < b.lt)
  );
}

export function checkNumber(fn: string, path: string, value: unknown, bounds: NumberBounds = {}): number {
  const kind = bounds.allowInfinity ? 'a number' : 'a finite number';
  const bound = describeBounds(bounds);
  const expectation = bound ? `${kind} ${bound}` : kind;
  if (typeof value !== 'number' || Number.isNaN(value)) throw typeError(fn, path, expectation, value);
  if (!bounds.allowInfinity && !Number.isFinite(value)) throw rangeError(fn, path, expectation, value);
  if (!inBounds(value, bounds)) throw rangeError(fn, path, expectation, value);
  if (bounds.float32 && Number.isFinite(value) && !Number.isFinite(Math.fround(value)))
    throw rangeError(fn, path, `${expectation} that fits in a float32 (magnitude <= ${FLOAT32_MAX})`, value);
  return value;
}

export function checkInt(fn: string, path: string, value: unknown, bounds: NumberBounds = {}): number {
  const bound = describeBounds(bounds);
  const expectation = bound ? `an integer ${bound}` : 'an integer';
  if (typeof value !== 'number' || !Number.isInteger(value)) throw typeError(fn, path, expectation, value);
  if (!inBounds(value, bounds)) throw rangeError(fn, path, expectation, value);
  return value;
}

export function checkBoolean(fn: string, path: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw typeError(fn, path, 'a boolean', value);
  return value;
}

export function checkString(fn: string, path: string, value: unknown, nonEmpty = true): string {
  if (typeof value !== 'string' || (nonEmpty && value.length === 0))
    throw typeError(fn, path, nonEmpty ? 'a non-empty string' : 'a string', value);
  return value;
}

export function checkOneOf<T extends string>(fn: string, path: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value))
    throw typeError(fn, path, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, value);
  return value as T;
}

export function checkObject(fn: string, path: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw typeError(fn, path, 'an object', value);
  return value as Record<string, unknown>;
}

export function checkFloat32Array(
  fn: string,
  path: string,
  value: unknown,
  length?: { min?: number; exact?: number },
): Float32Array {
  if (!(value instanceof Float32Array)) throw typeError(fn, path, 'a Float32Array', value);
  checkLength(fn, path, value, length);
  return value;
}

export function checkInt32Array(
  fn: string,
  path: string,
  value: unknown,
  length?: { min?: number; exact?: number },
): Int32Array {
  if (!(value instanceof Int32Array)) throw typeError(fn, path, 'an Int32Array', value);
  checkLength(fn, path, value, length);
  return value;
}

function checkLength(
  fn: string,
  path: string,
  value: { length: number },
  length?: { min?: number; exact?: number },
): void {
  if (length?.exact !== undefined && value.length !== length.exact)
    throw rangeError(fn, `${path}.length`, `${length.exact}`, value.length);
  if (length?.min !== undefined && value.length < length.min)
    throw rangeError(fn, `${path}.length`, `>= ${length.min}`, value.length);
}

/** Throws for keys of `obj` not in `known`, suggesting the closest known key. */
export function checkKnownKeys(fn: string, path: string, obj: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const near = closest(key, known);
    throw new TypeError(`${fn}: unknown option ${path}.${key}${near ? ` (did you mean ${path}.${near}?)` : ''}`);
  }
}

/** The entry of `candidates` nearest to `word` by edit distance, if reasonably near. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) ((best = c), (bestDistance = d));
  }
  return bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/**
 * Reader for one options object: `const o = options('AdamW', 'options', value)`, then
 * `o.number('lr', {gt: 0}, 1e-3)` reads `value.lr`, applies the default when undefined and
 * validates with the path `options.lr`.
 */
export function options(fn: string, path: string, value: unknown) {
  const obj = value === undefined ? {} : checkObject(fn, path, value);
  const at = (key: string) => `${path}.${key}`;
  return {
    obj,
    has: (key: string) => obj[key] !== undefined,
    number(key: string, bounds: NumberBounds = {}, fallback?: number): number {
      if (obj[key] === undefined && fallback !== undefined) return fallback;
      return checkNumber(fn, at(key), obj[key], bounds);
    },
    int(key: string, bounds: NumberBounds = {}, fallback?: number): number {
      if (obj[key] === undefined && fallback !== undefined) return fallback;
      return checkInt(fn, at(key), obj[key], bounds);
    },
    bool(key: string, fallback?: boolean): boolean {
      if (obj[key] === undefined && fallback !== undefined) return fallback;
      return checkBoolean(fn, at(key), obj[key]);
    },
    string(key: string, fallback?: string): string {
      if (obj[key] === undefined && fallback !== undefined) return fallback;
      return checkString(fn, at(key), obj[key]);
    },
    oneOf<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
      if (obj[key] === undefined && fallback !== undefined) return fallback;
      return checkOneOf(fn, at(key), obj[key], allowed);
    },
    f32(key: string, length?: { min?: number; exact?: number }): Float32Array {
      return checkFloat32Array(fn, at(key), obj[key], length);
    },
    i32(key: string, length?: { min?: number; exact?: number }): Int32Array {
      return checkInt32Array(fn, at(key), obj[key], length);
    },
    known(keys: readonly string[]): void {
      checkKnownKeys(fn, path, obj, keys);
    },
  };
}
