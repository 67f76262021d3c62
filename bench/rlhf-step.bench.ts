/**
 * One RLHF iteration on the ~6M-parameter model of issue 3, split by phase: PPO (policy, frozen
 * reference, critic, a 6M reward model as the reward source; 16 prompts × 64 new tokens, one PPO
 * epoch) — time per phase from the trainer's own `time/<phase>` metrics, tokens/s per phase, the
 * generation share — and a DPO step (batch 8 pairs, 2 × 256 tokens each, policy + reference).
 * Peak RSS of the process. No peer runs an RLHF iteration here: PyTorch's side of the same pieces
 * is in train-step (policy forward/backward/AdamW) and generate (KV-cached sampling).
 */
import { tinyConfig } from '../lib/engine/config.js';
import { Model } from '../lib/engine/model.js';
import { RewardModel } from '../lib/rewards/reward-model.js';
import { ByteTokenizer } from '../lib/tokenizer/index.js';
import { PPOTrainer } from '../lib/train/ppo.js';
import { PreferenceTrainer } from '../lib/train/preference.js';
import { emit, header, note, quick, table } from './common.js';
import { MODELS, peakRssMB } from './model-common.js';

const PROMPTS = 16, NEW_TOKENS = 64, PAIRS = 8, SEQ = 256;

async function main(): Promise<void> {
  header(`RLHF iteration phases, 6M model: PPO ${PROMPTS} prompts × ${NEW_TOKENS} new tokens; DPO ${PAIRS} pairs × ${SEQ} tokens`);
  const tok = new ByteTokenizer();
  const scalar = tinyConfig({ vocab: 4096, hidden: 256, layers: 6, heads: 8, kvHeads: 4, ffn: 688, maxPositions: 2048, valueHead: true });
  const policy = await Model.create(MODELS['6M'], { seed: 1 });
  const critic = await Model.create(scalar, { seed: 2 });
  const rm = await Model.create(scalar, { seed: 3 });
  const prompts = Array.from({ length: 64 }, (_, i) => ({ prompt: `Question ${i}: what is ${i % 10} plus ${(i * 3) % 10}? ` }));
  const iterations = quick ? 2 : 4;
  const ppo = new PPOTrainer({ policy, critic, tokenizer: tok, reward: new RewardModel(rm, tok, { batchSize: 16 }), prompts, iterations, promptsPerIteration: PROMPTS, sampling: { maxNewTokens: NEW_TOKENS, temperature: 1 }, miniBatchSize: 8, epochs: 1, lr: 1e-5 });
  const phases: Record<string, number[]> = {};
  let generated = 0;
  ppo.on('step', (e) => {
    if (e.step === 1) return;  // warm-up iteration
    for (const [k, v] of Object.entries(e.metrics)) if (k.startsWith('time/')) (phases[k.slice(5)] ??= []).push(v);
    generated += e.metrics.responseLength * PROMPTS;
  });
  await ppo.train();
  const measured = iterations - 1;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const total = Object.values(phases).reduce((a, xs) => a + mean(xs), 0);
  const perIter = generated / measured;
  const rows = Object.entries(phases).map(([k, xs]) => {
    emit({ bench: 'ppo-phase', impl: 'rlhf', shape: k, median_ms: mean(xs) * 1000, value: mean(xs) / total, unit: 'share' });
    return [k, mean(xs) * 1000, `${((100 * mean(xs)) / total).toFixed(1)}%`, k === 'generate' ? perIter / mean(xs) : NaN];
  });
  rows.push(['total', total * 1000, '100%', perIter / total]);
  table(['PPO phase', 'ms / iteration', 'share', 'generated tokens/s'], rows);
  emit({ bench: 'ppo-iteration', impl: 'rlhf', shape: `6M, ${PROMPTS}×${NEW_TOKENS}`, median_ms: total * 1000, value: perIter / total, unit: 'generated tokens/s' });

  const pairs = Array.from({ length: PAIRS * 3 }, (_, i) => ({ prompt: `Pair ${i}. `.repeat(8), chosen: 'a good answer '.repeat(12), rejected: 'a worse answer '.repeat(11) }));
  const dpo = new PreferenceTrainer({ policy, tokenizer: tok, train: pairs, loss: 'dpo', batchSize: PAIRS, seqLen: SEQ, epochs: 1, lr: 1e-6 });
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
  let tokens = 0;
  for (const p of pairs.slice(0, PAIRS)) tokens += Math.min(SEQ, tok.encode(p.prompt + p.chosen).length) + Math.min(SEQ, tok.encode(p.prompt + p.rejected).length);
  table(['DPO step (policy fwd+bwd, reference fwd, AdamW)', 'ms', 'tokens/s'], [[`${PAIRS} pairs`, dpoMs, tokens / (dpoMs / 1000)]]);
  emit({ bench: 'dpo-step', impl: 'rlhf', shape: `6M, ${PAIRS} pairs`, median_ms: dpoMs, value: tokens / (dpoMs / 1000), unit: 'tokens/s' });
  note(`peak RSS ${peakRssMB().toFixed(0)} MB (policy, reference, critic, reward model, optimizer moments)`);
  note('no peer: PyTorch numbers for the same pieces are in the train-step and generate benchmarks');
  for (const m of [policy, critic, rm]) m.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
