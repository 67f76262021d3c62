// Token ↔ sequence log-probs (docs/algorithms.md §1 notation): sums over response tokens, the spread gradient
// (checked end-to-end through every preference loss), property 10, the NTP regulariser (property 18's
// pure part), argument errors.
import t from 'tap';
import {
  dpoLoss,
  dpoRwLoss,
  exoPrefLoss,
  exoRwLoss,
  ktoLoss,
  ntpLoss,
  ppoPolicyLoss,
  sequenceLogprobs,
  simpoLoss,
  spreadSequenceGrad,
} from '../../lib/losses/index.js';
import { gradcheckParts, near, normal, Rng } from '../helpers/loss-helpers.js';

/** A batch of rows [prompt (mask 0) | response (mask 1) | padding (mask 0)]. */
function batchOf(seed: number, batch: number, seqLen: number) {
  const rng = new Rng(seed);
  const tokenLogp = normal(rng, batch * seqLen).map((v) => -Math.abs(v) - 0.1);
  const mask = new Float64Array(batch * seqLen);
  const lengths: number[] = [];
  for (let b = 0; b < batch; b++) {
    const start = rng.int(1, 4),
      end = rng.int(start + 1, seqLen - 1);
    for (let i = start; i < end; i++) mask[b * seqLen + i] = 1;
    lengths.push(end - start);
  }
  return { tokenLogp, mask, lengths };
}

t.test('sequenceLogprobs sums (or averages) response tokens; spreadSequenceGrad is its transpose', async (t) => {
  const B = 4,
    T = 12;
  const { tokenLogp, mask, lengths } = batchOf(1, B, T);
  const seq = sequenceLogprobs(tokenLogp, mask, B, T);
  const avg = sequenceLogprobs(tokenLogp, mask, B, T, { average: true });
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let i = 0; i < T; i++) if (mask[b * T + i]) s += tokenLogp[b * T + i];
    near(t, seq[b], s, 1e-15, `row ${b}: sum`);
    near(t, avg[b], s / lengths[b], 1e-15, `row ${b}: average`);
  }
  const c = [0.3, -1.2, 2, 0.7];
  for (const average of [false, true]) {
    const spread = spreadSequenceGrad(c, mask, B, T, { average });
    gradcheckParts(
      t,
      [tokenLogp],
      ([x]) => sequenceLogprobs(x, mask, B, T, { average }).reduce((s, v, b) => s + c[b] * v, 0),
      [spread],
      {
        label: `Σ_b c_b·seq_b (average ${average})`,
      },
    );
    t.ok(
      spread.every((g, i) => mask[i] === 1 || g === 0),
      'zero on prompt and padding',
    );
  }
  const empty = sequenceLogprobs([1, 2], [0, 0], 1, 2, { average: true });
  t.equal(empty[0], 0, 'a row without response tokens averages to 0');
  t.same(
    Array.from(sequenceLogprobs(new Float32Array([1, 2, 3, 4]), new Uint8Array([1, 0, 1, 1]), 2, 2)),
    [1, 7],
    'Float32Array / Uint8Array inputs',
  );
});

t.test(
  'property 10: only response tokens contribute to h_θ: changing prompt/padding log-probs changes no preference loss',
  async (t) => {
    // rows: 0..3 chosen/rejected pairs interleaved for the pairwise losses; groups of 2 for the K-sample ones
    const B = 8,
      T = 14;
    const policy = batchOf(10, B, T),
      ref = batchOf(11, B, T);
    ref.mask.set(policy.mask); // same responses under both models
    const rng = new Rng(12);
    const perturbed = policy.tokenLogp.map((v, i) => (policy.mask[i] ? v : v + rng.uniform(-5, 5)));
    const losses: Record<string, (tok: Float64Array) => number> = {};
    const seqOf = (tok: Float64Array, average = false) => sequenceLogprobs(tok, policy.mask, B, T, { average });
    const refSeq = sequenceLogprobs(ref.tokenLogp, ref.mask, B, T);
    const even = (a: Float64Array) => a.filter((_, i) => i % 2 === 0);
    const odd = (a: Float64Array) => a.filter((_, i) => i % 2 === 1);
    const pairwise = (s: Float64Array) => ({
      policyChosen: even(s),
      policyRejected: odd(s),
      refChosen: even(refSeq),
      refRejected: odd(refSeq),
    });
    losses.dpo = (tok) => dpoLoss({ ...pairwise(seqOf(tok)), beta: 0.1 }).loss;
    losses.cdpo = (tok) => dpoLoss({ ...pairwise(seqOf(tok)), beta: 0.1, labelSmoothing: 0.1 }).loss;
    losses.ipo = (tok) => dpoLoss({ ...pairwise(seqOf(tok)), beta: 0.1, variant: 'ipo' }).loss;
    losses.exoPref = (tok) => exoPrefLoss({ ...pairwise(seqOf(tok)), beta: 0.1 }).loss;
    losses.simpo = (tok) => {
      const s = seqOf(tok);
      const len = Float64Array.from(policy.lengths);
      return simpoLoss({
        policyChosen: even(s),
        policyRejected: odd(s),
        chosenLength: even(len),
        rejectedLength: odd(len),
        beta: 2,
        gamma: 0.5,
      }).loss;
    };
    losses.kto = (tok) =>
      ktoLoss({ policy: seqOf(tok), ref: refSeq, desirable: [1, 0, 1, 1, 0, 0, 1, 0], beta: 0.1, klBaseline: 0.2 })
        .loss;
    const rewards = normal(rng, B);
    losses.exoRw = (tok) =>
      exoRwLoss({ policy: seqOf(tok), ref: refSeq, rewards, groupSize: 4, betaPi: 0.5, betaR: 0.5 }).loss;
    losses.dpoRw = (tok) =>
      dpoRwLoss({ policy: seqOf(tok), ref: refSeq, rewards, groupSize: 2, betaPi: 0.5, betaR: 0.5 }).loss;
    for (const [name, f] of Object.entries(losses)) t.equal(f(perturbed), f(policy.tokenLogp), `${name}: unchanged`);

    // and the chained per-token gradient is exactly 0 there (DPO and EXO-rw end to end)
    const s = seqOf(policy.tokenLogp);
    const d = dpoLoss({ ...pairwise(s), beta: 0.1 });
    const dSeq = new Float64Array(B);
    for (let i = 0; i < B / 2; i++) ((dSeq[2 * i] = d.dPolicyChosen[i]), (dSeq[2 * i + 1] = d.dPolicyRejected[i]));
    const dTok = spreadSequenceGrad(dSeq, policy.mask, B, T);
    t.ok(
      dTok.every((g, i) => policy.mask[i] === 1 || g === 0),
      'DPO per-token gradient is 0 on prompt/padding tokens',
    );
    gradcheckParts(t, [policy.tokenLogp], ([x]) => losses.dpo(x), [dTok], { label: 'DPO through sequenceLogprobs' });
    const e = exoRwLoss({ policy: s, ref: refSeq, rewards, groupSize: 4, betaPi: 0.5, betaR: 0.5 });
    gradcheckParts(
      t,
      [policy.tokenLogp],
      ([x]) => losses.exoRw(x),
      [spreadSequenceGrad(e.dPolicy, policy.mask, B, T)],
      { label: 'EXO-rw through sequenceLogprobs' },
    );
  },
);

t.test(
  'property 18 (pure part): the NTP regulariser −mean log π over SFT tokens, its gradient, and the combined actor loss L_clip + λ·L_NTP',
  async (t) => {
    const rng = new Rng(18);
    const n = 20;
    const logp = normal(rng, n).map((v) => -Math.abs(v));
    const mask = Float64Array.from({ length: n }, (_, i) => (i % 4 === 0 ? 0 : 1));
    const r = ntpLoss({ logp, mask });
    const valid = Array.from(logp).filter((_, i) => mask[i]);
    near(t, r.loss, -valid.reduce((s, v) => s + v, 0) / valid.length, 1e-15, 'loss = −mean log π over valid tokens');
    t.equal(r.tokens, 15);
    gradcheckParts(t, [logp], ([x]) => ntpLoss({ logp: x, mask }).loss, [r.dLogp], { label: 'NTP' });
    const stepped = logp.map((v, i) => v - 0.1 * r.dLogp[i]);
    t.ok(ntpLoss({ logp: stepped, mask }).loss < r.loss, 'a gradient step lowers the SFT NLL');
    // actor objective on one token stream (the SFT tokens stand in for the PTX batch)
    const old = logp.map((v) => v + rng.uniform(-0.1, 0.1)),
      adv = normal(rng, n),
      lambda = 0.5;
    const actor = (x: Float64Array) =>
      ppoPolicyLoss({ logp: x, oldLogp: old, advantages: adv, mask, clipEps: 0.2 }).loss +
      lambda * ntpLoss({ logp: x, mask }).loss;
    const p = ppoPolicyLoss({ logp, oldLogp: old, advantages: adv, mask, clipEps: 0.2 });
    gradcheckParts(t, [logp], ([x]) => actor(x), [p.dLogp.map((g, i) => g + lambda * r.dLogp[i])], {
      label: 'L_clip + λ·L_NTP',
    });
    t.same(
      ntpLoss({ logp: [1, 2], mask: [0, 0] }),
      { loss: 0, dLogp: new Float64Array(2), tokens: 0 },
      'no valid token: 0',
    );
  },
);

t.test('argument errors name the argument', async (t) => {
  t.throws(() => sequenceLogprobs([1, 2, 3], [1, 1, 1], 2, 2), {
    name: 'RangeError',
    message: 'sequenceLogprobs: expected tokenLogp.length to be batch * seqLen (4), received 3',
  });
  t.throws(
    () => sequenceLogprobs([1, 2, 3, 4], [1, 1, 1], 2, 2),
    /expected mask.length to be equal to tokenLogp.length \(4\), received 3/,
  );
  t.throws(() => sequenceLogprobs([1, 2, 3, 4], [1, 1, 0.5, 1], 2, 2), {
    name: 'RangeError',
    message: 'sequenceLogprobs: expected mask[2] to be 0 or 1, received 0.5',
  });
  t.throws(() => sequenceLogprobs([1, 2, 3, 4], [1, 1, 1, 1], 2, 2.5), {
    name: 'TypeError',
    message: 'sequenceLogprobs: expected seqLen to be an integer >= 0, received 2.5',
  });
  t.throws(
    () => spreadSequenceGrad([1], [1, 1, 1, 1], 2, 2),
    /spreadSequenceGrad: expected dSeq.length to be batch \(2\), received 1/,
  );
  t.throws(
    () => sequenceLogprobs([1, 2, 3, 4], [1, 1, 1, 1], 2, 2, { average: 'yes' as never }),
    /options.average to be a boolean/,
  );
  t.throws(
    () => ntpLoss({ logp: [1, Infinity], mask: [1, 1] }),
    /ntpLoss: expected logp\[1\] to be a finite number, received Infinity/,
  );
});
