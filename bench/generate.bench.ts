/**
 * Generation tokens/s with the KV cache, batch 1 and 16, greedy, prompt 32 tokens, 64 new tokens,
 * ~6M-parameter model, against the same model in PyTorch eager with its own KV cache
 * (bench/peers/torch_model.py), same thread count. Goal: >= 2× PyTorch.
 */
import { buildInfo } from '../lib/engine/device.js';
import { Model } from '../lib/engine/model.js';
import { emit, header, median, note, quick, ratio, runPeer, table } from './common.js';
import { MODELS, childArgs, peakRssMB, runChild, type ModelName } from './model-common.js';

const PROMPT = 32, NEW = 64;

async function child(name: ModelName, batch: number, repeats: number): Promise<void> {
  buildInfo();
  const model = await Model.create(MODELS[name], { seed: 1 });
  const V = model.config.vocab;
  let s = 777;
  const prompts = Array.from({ length: batch }, () => Int32Array.from({ length: PROMPT }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % V)));
  const run = () => model.generate({ prompts, maxNewTokens: NEW, temperature: 0, stopTokens: [] });
  const first = await run();
  if (first.some((r) => r.tokens.length !== NEW)) throw new Error('generation stopped early');
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  process.stdout.write(JSON.stringify({ ms: median(times), peak: peakRssMB() }) + '\n');
}

async function main(): Promise<void> {
  const c = childArgs();
  if (c) return child(c.model as ModelName, c.batch as number, c.repeats as number);
  header(`generate: greedy, KV cache, prompt ${PROMPT} tokens, ${NEW} new tokens`);
  const rows: (string | number)[][] = [];
  const name: ModelName = '6M';
  for (const batch of quick ? [1] : [1, 16]) {
    const repeats = 5;
    const ours = runChild(import.meta.url, { model: name, batch, repeats });
    const shape = `${name} B${batch} P${PROMPT} N${NEW}`;
    const tps = (batch * NEW) / (ours.ms / 1000);
    emit({ bench: 'generate', impl: 'rlhf', shape, median_ms: ours.ms, value: tps, unit: 'tokens/s' });
    const peer = runPeer('torch_model.py', { mode: 'generate', config: MODELS[name], batch, prompt_len: PROMPT, new_tokens: NEW, repeats });
    const theirs = peer.results.find((r) => r.bench === 'generate');
    for (const r of peer.results) emit({ ...r, shape });
    rows.push([shape, tps, theirs?.value ?? NaN, ratio(tps, theirs?.value)]);
    if (peer.reason) note(`torch: skipped — ${peer.reason}`);
  }
  table(['model / batch', 'rlhf tokens/s', 'torch eager tokens/s', 'rlhf/torch'], rows);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
