// The exact mode-seeking illustration (lib/study/studies/exo-vs-dpo.ts) against closed forms: the
// forward-KL (DPO-rw) fit within the Gaussian family is moment matching, so its mean and σ equal the
// target's on the grid; the reverse-KL (EXO-rw) fit of a well-separated bimodal target sits on one
// mode with about the mode's width; each loss's fit is a stationary point (finite-difference
// gradient of the loss at the fit ≈ 0), and the study's verdict follows.
import t from 'tap';
import { dpoRwLoss } from '../../lib/losses/preference.js';
import { exoRwLoss } from '../../lib/losses/exo.js';
import { STUDY_PRESETS } from '../../lib/study/setup.js';
import {
  bimodalTarget,
  exoVsDpo,
  fitGaussian,
  gaussianOnGrid,
  GRID,
  massBetween,
  MODE_SD,
} from '../../lib/study/studies/exo-vs-dpo.js';

const moments = (p: Float64Array) => {
  let m = 0,
    v = 0;
  p.forEach((w, i) => (m += w * GRID[i]));
  p.forEach((w, i) => (v += w * (GRID[i] - m) ** 2));
  return { m, s: Math.sqrt(v) };
};

t.test('forward KL: moment matching; reverse KL: one mode', async (t) => {
  for (const seed of [0, 1, 2]) {
    const { q, m } = bimodalTarget(seed);
    const dpo = fitGaussian('dpo-rw', q);
    const target = moments(q),
      fit = moments(dpo.p);
    t.ok(Math.abs(fit.m - target.m) < 0.02, `seed ${seed}: DPO mean ${fit.m} vs target ${target.m}`);
    t.ok(Math.abs(fit.s - target.s) < 0.02, `seed ${seed}: DPO sd ${fit.s} vs target ${target.s}`);
    const exo = fitGaussian('exo-rw', q);
    t.ok(Math.abs(Math.abs(exo.mu) - m) < 0.15, `seed ${seed}: EXO mean ${exo.mu} on a mode (±${m})`);
    t.ok(
      Math.abs(Math.exp(exo.logSigma) - MODE_SD) < 0.1,
      `seed ${seed}: EXO σ ${Math.exp(exo.logSigma)} ≈ the mode's ${MODE_SD}`,
    );
    t.ok(massBetween(dpo.p, m) > massBetween(q, m), 'DPO puts more mass between the modes than the target');
    t.ok(massBetween(exo.p, m) < 0.05, `EXO leaves the gap nearly empty (${massBetween(exo.p, m)})`);
    t.ok(massBetween(dpo.p, m) > 5 * massBetween(exo.p, m), 'DPO puts at least 5× more there');
  }
});

t.test('the fits are stationary points of the library losses (central differences)', async (t) => {
  const { q } = bimodalTarget(0);
  const rewards = q.map((v) => Math.log(v));
  const ref = new Float64Array(GRID.length);
  const lossAt = (loss: 'exo-rw' | 'dpo-rw', mu: number, ls: number) => {
    const p = gaussianOnGrid(mu, ls).map((v) => Math.log(v));
    const args = { policy: p, ref, rewards, groupSize: GRID.length, betaPi: 1, betaR: 1 };
    return loss === 'exo-rw' ? exoRwLoss(args).loss : dpoRwLoss({ ...args, target: 'softmax' }).loss;
  };
  for (const loss of ['exo-rw', 'dpo-rw'] as const) {
    const f = fitGaussian(loss, q);
    const h = 1e-4;
    const gMu = (lossAt(loss, f.mu + h, f.logSigma) - lossAt(loss, f.mu - h, f.logSigma)) / (2 * h);
    const gLs = (lossAt(loss, f.mu, f.logSigma + h) - lossAt(loss, f.mu, f.logSigma - h)) / (2 * h);
    t.ok(Math.abs(gMu) < 1e-3 && Math.abs(gLs) < 1e-3, `${loss}: gradient (${gMu}, ${gLs}) ≈ 0`);
    // and a real minimum: moving away raises the loss
    t.ok(lossAt(loss, f.mu + 0.3, f.logSigma) > lossAt(loss, f.mu, f.logSigma), `${loss}: higher loss off the fit`);
  }
});

t.test('the study: verdict and fields', async (t) => {
  const seeds = [0, 1, 2];
  const rows = [];
  for (const seed of seeds) rows.push(await exoVsDpo.runSeed({ seed, settings: STUDY_PRESETS.small, cacheDir: '' }));
  const o = exoVsDpo.summarize(rows, seeds, STUDY_PRESETS.small);
  t.equal(o.reproduced, true, o.verdict);
  t.ok(o.ci[0] > 0.1, `DPO − EXO mass between modes ${o.effect} [${o.ci}]`);
  t.match(o.chart, /^<svg/);
  t.match(o.verdict, /^exo-vs-dpo: .* reproduced: the 95% interval excludes zero\.$/);
});
