/**
 * Generation tokens/s with the KV cache, batch 1 and 16, greedy, prompt 32 tokens, 64 new tokens,
 * ~6M-parameter model, against the same model in PyTorch eager with its own KV cache
 * (bench/peers/torch_model.py), same thread count. Goal: >= 2× PyTorch.
 * Also llama.cpp (node-llama-cpp, prebuilt CPU build) on the same weights exported as a GGUF of the
 * same dtype, same thread count, F32 KV cache (ours is f32), greedy, its per-token sampling loop; at
 * batch B it runs B sequences of one context concurrently, which node-llama-cpp decodes together in
 * one llama_decode batch per step (llama.cpp's batched decoding). Each row runs at dtype 'f32' and 'bf16' (Model dtype; --json rows carry it); the
 * ~50M model at batch 1 (weights 200 MB in f32, past the caches: bandwidth-bound) gives the
 * bf16/f32 ratio the goal is stated on: >= 1.6x.
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

type DType = 'f32' | 'bf16';

async function child(name: ModelName, batch: number, repeats: number, dtype: DType): Promise<void> {
  buildInfo();
  const model = await Model.create(MODELS[name], { seed: 1, dtype });
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

/** llama.cpp on the same model (seed 1) as a GGUF of `dtype`: median ms of prompt + NEW greedy tokens for `batch` sequences. */
async function llamaCppChild(name: ModelName, batch: number, repeats: number, dtype: DType): Promise<void> {
  const threads = buildInfo().threads;
  const model = await Model.create(MODELS[name], { seed: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-bench-gguf-'));
  try {
    const file = join(dir, 'model.gguf');
    await exportGguf(model, file, { tokenizer: new ByteTokenizer(), dtype });
    const prompts = promptTokens(model.config.vocab, batch);
    model.dispose();
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false });
    const lm = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
    const ctx = await lm.createContext({
      contextSize: 256 * batch,
      batchSize: Math.max(256, batch * PROMPT),
      sequences: batch,
      threads,
      experimentalKvCacheKeyType: 'F32',
      experimentalKvCacheValueType: 'F32',
    });
    const seqs = prompts.map(() => ctx.getSequence());
    const one = async (i: number) => {
      await seqs[i].clearHistory();
      let n = 0;
      for await (const token of seqs[i].evaluate(Array.from(prompts[i]) as never, { temperature: 0 })) {
        void token;
        if (++n === NEW) break;
      }
      return n;
    };
    // every sequence at once: node-llama-cpp batches their pending tokens into one decode per step
    const run = async () => Math.min(...(await Promise.all(seqs.map((_, i) => one(i)))));
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
  const dt = (c?.dtype as DType | undefined) ?? 'f32';
  if (c?.peer === 'llama.cpp')
    return llamaCppChild(c.model as ModelName, (c.batch as number | undefined) ?? 1, c.repeats as number, dt);
  if (c) return child(c.model as ModelName, c.batch as number, c.repeats as number, dt);
  header(`generate: greedy, KV cache, prompt ${PROMPT} tokens, ${NEW} new tokens`);
  const rows: (string | number)[][] = [];
  const runs: Array<[ModelName, number]> = quick
    ? [['6M', 1]]
    : [
        ['6M', 1],
        ['6M', 16],
        ['50M', 1],
      ];
  for (const [name, batch] of runs) {
    const repeats = name === '6M' ? 5 : 3;
    const shape = `${name} B${batch} P${PROMPT} N${NEW}`;
    // the torch eager peer (f32) on the small model only
    const peer =
      name === '6M'
        ? runPeer('torch_model.py', {
            mode: 'generate',
            config: MODELS[name],
            batch,
            prompt_len: PROMPT,
            new_tokens: NEW,
            repeats,
          })
        : { results: [], reason: undefined };
    const theirs = peer.results.find((r) => r.bench === 'generate');
    for (const r of peer.results) emit({ ...r, shape, dtype: 'f32' });
    let f32Tps = NaN;
    for (const dtype of ['f32', 'bf16'] as const) {
      const ours = runChild(import.meta.url, { model: name, batch, repeats, dtype });
      const tps = (batch * NEW) / (ours.ms / 1000);
      if (dtype === 'f32') f32Tps = tps;
      emit({ bench: 'generate', impl: 'rlhf', shape, median_ms: ours.ms, value: tps, unit: 'tokens/s', dtype });
      let cpp: number | undefined;
      try {
        const l = runChild(import.meta.url, { peer: 'llama.cpp', model: name, batch, repeats, dtype });
        cpp = (batch * NEW) / (l.ms / 1000);
        emit({ bench: 'generate', impl: 'llama.cpp', shape, median_ms: l.ms, value: cpp, unit: 'tokens/s', dtype });
      } catch (e) {
        note(`llama.cpp ${dtype}: skipped — ${(e as Error).message.split('\n').slice(0, 3).join(' | ')}`);
      }
      const torchTps = dtype === 'f32' ? theirs?.value : undefined;
      rows.push([
        shape,
        dtype,
        tps,
        torchTps ?? NaN,
        ratio(tps, torchTps),
        cpp ?? NaN,
        ratio(tps, cpp),
        ratio(tps, f32Tps),
      ]);
    }
    if (peer.reason) note(`torch: skipped — ${peer.reason}`);
  }
  table(
    [
      'model / batch',
      'dtype',
      'rlhf tokens/s',
      'torch eager f32 tokens/s',
      'rlhf/torch',
      'llama.cpp tokens/s',
      'rlhf/llama.cpp',
      'vs rlhf f32',
    ],
    rows,
  );
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
