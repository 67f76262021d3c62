/**
 * Inter-annotator agreement on categorical labels.
 *
 *   Cohen's κ (two raters, items both rated):  κ = (p_o − p_e) / (1 − p_e),
 *     p_o = fraction of items with equal labels, p_e = Σ_c p₁(c)·p₂(c) (each rater's label shares).
 *   Fleiss' κ (items with n_i ≥ 2 raters; n_i may vary):
 *     P_i = (Σ_c n_ic² − n_i) / (n_i(n_i − 1)),  P̄ = mean_i P_i,  p_c = Σ_i n_ic / Σ_i n_i,
 *     P̄_e = Σ_c p_c²,  κ = (P̄ − P̄_e) / (1 − P̄_e).
 * Both are null when undefined (no items, or chance agreement p_e = 1).
 */

/** Cohen's κ of two label sequences over the same items (same length). */
export function cohensKappa(x: readonly string[], y: readonly string[]): number | null {
  if (x.length !== y.length)
    throw new RangeError(`cohensKappa: expected equally long label lists, received ${x.length} and ${y.length}`);
  const n = x.length;
  if (n === 0) return null;
  const px = new Map<string, number>();
  const py = new Map<string, number>();
  let same = 0;
  for (let i = 0; i < n; i++) {
    if (x[i] === y[i]) same++;
    px.set(x[i], (px.get(x[i]) ?? 0) + 1 / n);
    py.set(y[i], (py.get(y[i]) ?? 0) + 1 / n);
  }
  const po = same / n;
  let pe = 0;
  for (const [c, p] of px) pe += p * (py.get(c) ?? 0);
  return 1 - pe < 1e-12 ? null : (po - pe) / (1 - pe);
}

/** Fleiss' κ from per-item category counts (rows with fewer than 2 raters are ignored). */
export function fleissKappa(counts: ReadonlyArray<readonly number[]>): number | null {
  const rows = counts.filter((r) => r.reduce((a, b) => a + b, 0) >= 2);
  if (rows.length === 0) return null;
  const cats = rows[0].length;
  const totals = new Array<number>(cats).fill(0);
  let raters = 0;
  let pBar = 0;
  for (const r of rows) {
    const ni = r.reduce((a, b) => a + b, 0);
    pBar += (r.reduce((a, c) => a + c * c, 0) - ni) / (ni * (ni - 1));
    r.forEach((c, j) => (totals[j] += c));
    raters += ni;
  }
  pBar /= rows.length;
  const pe = totals.reduce((a, t) => a + (t / raters) ** 2, 0);
  return 1 - pe < 1e-12 ? null : (pBar - pe) / (1 - pe);
}

/** Fraction of rater pairs (over all items) that gave equal labels; null without any pair. */
export function pairwiseAgreement(itemLabels: ReadonlyArray<readonly string[]>): number | null {
  let pairs = 0;
  let same = 0;
  for (const labels of itemLabels)
    for (let i = 0; i < labels.length; i++)
      for (let j = i + 1; j < labels.length; j++) {
        pairs++;
        if (labels[i] === labels[j]) same++;
      }
  return pairs ? same / pairs : null;
}
