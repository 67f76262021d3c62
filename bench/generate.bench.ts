/**
 * Generation tokens/s with the KV cache, batch 1 and 16, greedy, prompt 32 tokens, 64 new tokens,
 * ~6M-parameter model, against the same model in PyTorch eager with its own KV cache
 * (bench/peers/torch_model.py), same thread count. Goal: >= 2× PyTorch.
 * At batch 1 also llama.cpp (node-llama-cpp, prebuilt CPU build) on the same weights exported as an
 * f32 GGUF, same thread count, F32 KV cache (ours is f32), greedy, its per-token sampling loop.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportGguf } from '../lib/io/gguf-export.js';
import { ByteTokenizer } from '../lib/tokenizer/byte.js';
import { buildInfo } from '../lib/engine/device.js';
import { Model } from '../lib/engine/model.js';
import { emit, header, median, note, quick, ratio, runPeer, table } from './common.js';
import { MODELS, childArgs, peakRssMB, runChild, type ModelName } from './model-common.js';

const PROMPT = 32,
  NEW = 64;

async function child(name: ModelName, batch: number, repeats: number): Promise<void> {
  buildInfo();
  const model = await Model.create(MODELS[name], { seed: 1 });
  const V = model.config.vocab;
  const prompts = promptTokens(V, batch);
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

function promptTokens(V: number, batch: number): Int32Array[] {
  let s = 777;
  return Array.from({ length: batch }, () =>
    Int32Array.from({ length: PROMPT }, () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % V),
  );
}

/** llama.cpp on the same model (seed 1) as an f32 GGUF: median ms of prompt + NEW greedy tokens, batch 1. */
async function llamaCppChild(name: ModelName, repeats: number): Promise<void> {
  const threads = buildInfo().threads;
  const model = await Model.create(MODELS[name], { seed: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-bench-gguf-'));
  try {
    const file = join(dir, 'model.gguf');
    await exportGguf(model, file, { tokenizer: new ByteTokenizer(), dtype: 'f32' });
    const [prompt] = promptTokens(model.config.vocab, 1);
    model.dispose();
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false });
    const lm = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
    const ctx = await lm.createContext({
      contextSize: 256,
      batchSize: 256,
      threads,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
    });
    const seq = ctx.getSequence();
    const run = async () => {
      await seq.clearHistory();
      let n = 0;
      for await (const token of seq.evaluate(Array.from(prompt) as never, { temperature: 0 })) {
        void token;
        if (++n === NEW) break;
      }
      return n;
    };
    if ((await run()) !== NEW) throw new Error('llama.cpp generation stopped early');
    const times: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      await run();
      times.push(performance.now() - t0);
    }
    await ctx.dispose();
    await lm.dispose();
    await llama.dispose();
    process.stdout.write(JSON.stringify({ ms: median(times), peak: peakRssMB(), threads }) + '\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const c = childArgs();
  if (c?.peer === 'llama.cpp') return llamaCppChild(c.model as ModelName, c.repeats as number);
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
    const peer = runPeer('torch_model.py', {
      mode: 'generate',
      config: MODELS[name],
      batch,
      prompt_len: PROMPT,
      new_tokens: NEW,
      repeats,
    });
    const theirs = peer.results.find((r) => r.bench === 'generate');
    for (const r of peer.results) emit({ ...r, shape });
    let cpp: number | undefined;
    if (batch === 1) {
      try {
        const l = runChild(import.meta.url, { peer: 'llama.cpp', model: name, repeats });
        cpp = NEW / (l.ms / 1000);
        emit({ bench: 'generate', impl: 'llama.cpp', shape, median_ms: l.ms, value: cpp, unit: 'tokens/s' });
      } catch (e) {
        note(`llama.cpp: skipped — ${(e as Error).message.split('\n').slice(0, 3).join(' | ')}`);
      }
    }
    rows.push([shape, tps, theirs?.value ?? NaN, ratio(tps, theirs?.value), cpp ?? NaN, ratio(tps, cpp)]);
    if (peer.reason) note(`torch: skipped — ${peer.reason}`);
  }
  table(
    ['model / batch', 'rlhf tokens/s', 'torch eager tokens/s', 'rlhf/torch', 'llama.cpp tokens/s', 'rlhf/llama.cpp'],
    rows,
  );
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
