/**
 * Numeric comparison with stated tolerances:
 *   elementwise  |got − ref| <= atol + rtol·|ref|   (the first violations are printed)
 *   whole tensor normalised MSE  Σ(got − ref)² / Σ ref²
 */
import type { Test } from 'tap';

type Numeric = ArrayLike<number>;

export interface Tolerance {
  atol: number;
  rtol: number;
}

/** Indices violating the elementwise tolerance (up to `limit`), with NaN treated as a violation. */
export function violations(
  got: Numeric,
  ref: Numeric,
  tol: Tolerance,
  limit = 5,
): { index: number; got: number; ref: number }[] {
  const out: { index: number; got: number; ref: number }[] = [];
  for (let i = 0; i < ref.length && out.length < limit; i++) {
    const g = got[i],
      r = ref[i];
    if (!(Math.abs(g - r) <= tol.atol + tol.rtol * Math.abs(r))) out.push({ index: i, got: g, ref: r });
  }
  return out;
}

export function assertClose(t: Test, got: Numeric, ref: Numeric, tol: Tolerance, label = 'values'): boolean {
  if (got.length !== ref.length) return t.fail(`${label}: length ${got.length} != reference ${ref.length}`);
  const bad = violations(got, ref, tol);
  return t.ok(
    bad.length === 0,
    `${label} within atol ${tol.atol} + rtol ${tol.rtol}·|ref|` +
      (bad.length ? `; first mismatches: ${bad.map((b) => `[${b.index}] ${b.got} vs ${b.ref}`).join(', ')}` : ''),
  );
}

export function nmse(got: Numeric, ref: Numeric): number {
  let num = 0,
    den = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = got[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den === 0 ? num : num / den;
}

export function maxAbsDiff(got: Numeric, ref: Numeric): number {
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs(got[i] - ref[i]));
  return m;
}

export function bitwiseEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length),
    ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}
