/** Readers of config.json values shared by config.ts and the family modules (errors name the file and key). */
import { RlhfError, ErrorCode } from '../errors.js';

export type Json = Record<string, unknown>;

export function fail(source: string, message: string, code: ErrorCode = ErrorCode.UNSUPPORTED): never {
  throw new RlhfError(code, `${source}: ${message}`);
}

export function int(source: string, j: Json, key: string, min = 1): number {
  const v = j[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    fail(source, `"${key}" must be an integer >= ${min}, got ${JSON.stringify(v)}`, ErrorCode.FORMAT);
  return v;
}

export function num(source: string, j: Json, key: string): number {
  const v = j[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    fail(source, `"${key}" must be a positive number, got ${JSON.stringify(v)}`, ErrorCode.FORMAT);
  return v;
}
