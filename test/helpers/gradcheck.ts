/**
 * Finite-difference gradient checks in float64.
 *
 * `finiteDifference(f, x, i, eps)` is the central difference (f(x + eps·e_i) − f(x − eps·e_i)) / 2eps,
 * with error O(eps²·f''') for smooth f. `gradcheck` compares an analytic gradient with it at the
 * given (or all) coordinates, using atol + rtol·|numeric|.
 */
import type { Test } from 'tap';

export type ScalarFn = (x: Float64Array) => number;

export function finiteDifference(f: ScalarFn, x: Float64Array, i: number, eps: number): number {
  const saved = x[i];
  x[i] = saved + eps;
  const up = f(x);
  x[i] = saved - eps;
  const down = f(x);
  x[i] = saved;
  return (up - down) / (2 * eps);
}

export interface GradcheckOptions {
  eps?: number;
  atol?: number;
  rtol?: number;
  /** coordinates to check (default: all) */
  indices?: number[];
  label?: string;
}

export function gradcheck(
  t: Test,
  f: ScalarFn,
  x: Float64Array,
  analytic: ArrayLike<number>,
  o: GradcheckOptions = {},
): boolean {
  const eps = o.eps ?? 1e-6,
    atol = o.atol ?? 1e-7,
    rtol = o.rtol ?? 1e-5;
  const indices = o.indices ?? Array.from({ length: x.length }, (_, i) => i);
  const bad: string[] = [];
  for (const i of indices) {
    const numeric = finiteDifference(f, x, i, eps);
    if (!(Math.abs(analytic[i] - numeric) <= atol + rtol * Math.abs(numeric)))
      bad.push(`[${i}] analytic ${analytic[i]} vs numeric ${numeric}`);
  }
  return t.ok(
    bad.length === 0,
    `${o.label ?? 'gradient'} matches finite differences at ${indices.length} coordinates` +
      (bad.length ? `; mismatches: ${bad.slice(0, 5).join(', ')}` : ''),
  );
}

/**
 * Checks a model parameter's accumulated gradient against central differences of `loss` (a float32
 * model: eps 2e-2, tolerance 3e-3 + 3e-2·|numeric|) at its first, middle and last entries; returns
 * the mismatches as readable lines (empty: all agree). The parameter is restored afterwards.
 */
export async function parameterGradientMismatches(
  m: { getParameter(n: string): Promise<Float32Array>; setParameter(n: string, d: Float32Array): Promise<void> },
  p: { name: string; size: number },
  grad: Float32Array,
  loss: () => Promise<number>,
): Promise<string[]> {
  const bad: string[] = [];
  const w = await m.getParameter(p.name);
  for (const idx of [0, Math.floor(p.size / 2), p.size - 1]) {
    const eps = 2e-2,
      saved = w[idx];
    w[idx] = saved + eps;
    await m.setParameter(p.name, w);
    const up = await loss();
    w[idx] = saved - eps;
    await m.setParameter(p.name, w);
    const down = await loss();
    w[idx] = saved;
    await m.setParameter(p.name, w);
    const num = (up - down) / (2 * eps);
    if (!(Math.abs(grad[idx] - num) <= 3e-3 + 3e-2 * Math.abs(num)))
      bad.push(`${p.name}[${idx}] ${grad[idx]} vs ${num}`);
  }
  return bad;
}
