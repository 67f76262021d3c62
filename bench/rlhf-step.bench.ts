/**
 * One RLHF iteration on the ~6M-parameter model of the benchmarks, split by phase: PPO (policy, frozen
 * reference, critic, a 6M reward model as the reward source; 16 prompts × 64 new tokens, one PPO
 * epoch) — time per phase from the trainer's own `time/<phase>` metrics, tokens/s per phase, the
 * generation share — and a DPO step (batch 8 pairs, 2 × 256 tokens each, policy + reference).
 * Peak RSS of the process. Peer: bench/peers/torch_rlhf_step.py, the same iteration and step in eager
 * PyTorch (same models, prompt length, new tokens, minibatches and DPO row lengths; its phases
 * bounded as ours), run after ours with the same thread count.
 */
import { tinyConfig } from '../lib/engine/config.js';
import { Model } from '../lib/engine/model.js';
import { RewardModel } from '../lib/rewards/reward-model.js';
import { ByteTokenizer } from '../lib/tokenizer/index.js';
import { encodePrompt } from '../lib/data/index.js';
import { encodeRow } from '../lib/train/preference-common.js';
import { PPOTrainer } from '../lib/train/ppo.js';
import { PreferenceTrainer } from '../lib/train/preference.js';
import { emit, header, note, quick, runPeer, table } from './common.js';
import { MODELS, peakRssMB } from './model-common.js';

const PROMPTS = 16,
  NEW_TOKENS = 64,
  PAIRS = 8,
  SEQ = 256;

async function main(): Promise<void> {
  header(
    `RLHF iteration phases, 6M model: PPO ${PROMPTS} prompts × ${NEW_TOKENS} new tokens; DPO ${PAIRS} pairs × ${SEQ} tokens`,
  );
  const tok = new ByteTokenizer();
  const scalar = tinyConfig({
    vocab: 4096,
    hidden: 256,
    layers: 6,
    heads: 8,
    kvHeads: 4,
    ffn: 688,
    maxPositions: 2048,
    valueHead: true,
  });
  const policy = await Model.create(MODELS['6M'], { seed: 1 });
  const critic = await Model.create(scalar, { seed: 2 });
  const rm = await Model.create(scalar, { seed: 3 });
  const prompts = Array.from({ length: 64 }, (_, i) => ({
    prompt: `Question ${i}: what is ${i % 10} plus ${(i * 3) % 10}? `,
  }));
  const iterations = quick ? 2 : 4;
  const ppo = new PPOTrainer({
    policy,
    critic,
    tokenizer: tok,
    reward: new RewardModel(rm, tok, { batchSize: 16 }),
    prompts,
    iterations,
    promptsPerIteration: PROMPTS,
    sampling: { maxNewTokens: NEW_TOKENS, temperature: 1 },
    miniBatchSize: 8,
    epochs: 1,
    lr: 1e-5,
  });
  const phases: Record<string, number[]> = {};
  let generated = 0;
  ppo.on('step', (e) => {
    if (e.step === 1) return; // warm-up iteration
    for (const [k, v] of Object.entries(e.metrics)) if (k.startsWith('time/')) (phases[k.slice(5)] ??= []).push(v);
    generated += e.metrics.responseLength * PROMPTS;
  });
  await ppo.train();
  const measured = iterations - 1;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const total = Object.values(phases).reduce((a, xs) => a + mean(xs), 0);
  const perIter = generated / measured;
  const ours: Record<string, number> = Object.fromEntries(
    Object.entries(phases).map(([k, xs]) => [k, mean(xs) * 1000]),
  );
  for (const [k, ms] of Object.entries(ours))
    emit({ bench: 'ppo-phase', impl: 'rlhf', shape: k, median_ms: ms, value: ms / (total * 1000), unit: 'share' });
  emit({
    bench: 'ppo-iteration',
    impl: 'rlhf',
    shape: `6M, ${PROMPTS}×${NEW_TOKENS}`,
    median_ms: total * 1000,
    value: perIter / total,
    unit: 'generated tokens/s',
  });

  const pairs = Array.from({ length: PAIRS * 3 }, (_, i) => ({
    prompt: `Pair ${i}. `.repeat(8),
    chosen: 'a good answer '.repeat(12),
    rejected: 'a worse answer '.repeat(11),
  }));
  const dpo = new PreferenceTrainer({
    policy,
    tokenizer: tok,
    train: pairs,
    loss: 'dpo',
    batchSize: PAIRS,
    seqLen: SEQ,
    epochs: 1,
    lr: 1e-6,
  });
  const stepTimes: number[] = [];
  let last = performance.now();
  dpo.on('step', () => {
    const now = performance.now();
    stepTimes.push(now - last);
    last = now;
  });
  last = performance.now();
  await dpo.train();
  const dpoMs = stepTimes.length > 1 ? mean(stepTimes.slice(1)) : stepTimes[0];
  // [prompt, prompt + response] tokens of each chosen and rejected row, as the trainer encodes them
  const dpoLengths = pairs.slice(0, PAIRS).map((p) =>
    [p.chosen, p.rejected].map((r) => {
      const { seq } = encodeRow(tok, p.prompt, r, SEQ);
      return [seq.promptIds.length, seq.promptIds.length + seq.responseIds.length];
    }),
  );
  const tokens = dpoLengths.flat().reduce((a, [, total]) => a + total, 0);
  emit({
    bench: 'dpo-step',
    impl: 'rlhf',
    shape: `6M, ${PAIRS} pairs`,
    median_ms: dpoMs,
    value: tokens / (dpoMs / 1000),
    unit: 'tokens/s',
  });
  const rss = peakRssMB();
  for (const m of [policy, critic, rm]) m.dispose();

  // the peer, after ours (the cores are not shared), on the same shapes
  const promptLen = Math.round(mean(prompts.map((p) => encodePrompt(tok, p.prompt).length)));
  const peer = runPeer('torch_rlhf_step.py', {
    config: MODELS['6M'],
    prompts: PROMPTS,
    prompt_len: promptLen,
    new_tokens: NEW_TOKENS,
    mini_batch: 8,
    iterations,
    dpo_lengths: dpoLengths,
    dpo_steps: stepTimes.length - 1 || 1,
  });
  const theirs = (bench: string, shape?: string) =>
    peer.results.find((m) => m.bench === bench && (shape === undefined || m.shape === shape));
  const vs = (ourMs: number, theirMs: number | undefined) =>
    theirMs === undefined ? 'n/a' : `${(theirMs / ourMs).toFixed(2)}x`;
  const rows = Object.entries(ours).map(([k, ms]) => [
    k,
    ms,
    `${((100 * ms) / (total * 1000)).toFixed(1)}%`,
    theirs('ppo-phase', k)?.median_ms ?? NaN,
    vs(ms, theirs('ppo-phase', k)?.median_ms),
  ]);
  const torchTotal = theirs('ppo-iteration');
  rows.push(['total', total * 1000, '100%', torchTotal?.median_ms ?? NaN, vs(total * 1000, torchTotal?.median_ms)]);
  table(['PPO phase', 'rlhf ms / iteration', 'share', 'torch ms', 'speed vs torch'], rows);
  note(
    `generate + baseline (the reference's y_ref, sampled once per new prompt, and scored): ${((100 * ((ours.generate ?? 0) + (ours.baseline ?? 0))) / (total * 1000)).toFixed(1)}% of the iteration`,
  );
  note(
    `generated tokens/s over the whole iteration: rlhf ${(perIter / total).toFixed(0)}, torch ${torchTotal ? torchTotal.value.toFixed(0) : 'n/a'}`,
  );
  const torchDpo = theirs('dpo-step');
  table(
    ['DPO step (policy fwd+bwd, reference fwd, AdamW)', 'rlhf ms', 'rlhf tokens/s', 'torch ms', 'speed vs torch'],
    [[`${PAIRS} pairs`, dpoMs, tokens / (dpoMs / 1000), torchDpo?.median_ms ?? NaN, vs(dpoMs, torchDpo?.median_ms)]],
  );
  const torchRss = theirs('rlhf-peak-memory')?.value;
  note(
    `peak RSS: rlhf ${rss.toFixed(0)} MB, torch ${torchRss === undefined ? 'n/a' : torchRss.toFixed(0) + ' MB'} (policy, reference, critic, reward model, optimizer moments)`,
  );
  if (peer.reason) note(`torch peer skipped: ${peer.reason}`);
  else
    note(
      `torch ${peer.version}: eager float32; PPO prompts all ${promptLen} tokens, ${NEW_TOKENS} new tokens, no early stop`,
    );
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
