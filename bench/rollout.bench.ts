/**
 * A GRPO-style rollout: 16 prompts × 8 samples, 256-token prompts, up to 128 new tokens at
 * temperature 1, lengths varied by a stop-token set (64 of the 4096 ids, so about 1 in 64 draws
 * ends a sample), ~6M-parameter model. Two implementations of the same sampling, each in its own
 * process, same thread count:
 *   static:     Model.generate({staticBatch: true}) — one contiguous KV cache of 128 rows ×
 *               (256 + 128) positions, all 128 prompts prefilled;
 *   continuous: a GenerationSession — paged KV cache (blocks of 16), the 8 samples of a prompt
 *               prefilled once and sharing its blocks, rows leaving as they finish.
 *   continuous-bf16: the same session with kvDtype 'bf16' (k/v rounded to bf16: its tokens may
 *               differ from the f32 runs', so only its count is reported beside them).
 * Both f32 runs draw the same Philox streams, so they generate the same tokens (checked here): the value is
 * generated tokens per second of wall time; peak_kv_bytes is the static cache's size and the
 * session's peak blocks in use × block bytes. Goals: continuous ≥ 3× static tokens/s, peak KV ≤ 40%.
 */
import { buildInfo } from '../lib/engine/device.js';
import { GenerationSession } from '../lib/engine/generation-session.js';
import { Model } from '../lib/engine/model.js';
import { header, jsonOutput, median, note, quick as quickFlag, ratio, table } from './common.js';
import { MODELS, childArgs, peakRssMB, runChild } from './model-common.js';

// the child processes get the parent's --quick through their arguments
const quick = quickFlag || childArgs()?.quick === true;
const PROMPTS = quick ? 4 : 16,
  SAMPLES = quick ? 4 : 8,
  PROMPT = quick ? 64 : 256,
  NEW = quick ? 32 : 128,
  BLOCK = 16,
  SEED = 17;
const STOP = Array.from({ length: 64 }, (_, i) => i);

function promptTokens(V: number): Int32Array[] {
  let s = 4242;
  return Array.from({ length: PROMPTS }, () =>
    Int32Array.from({ length: PROMPT }, () => 64 + ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % (V - 64))),
  );
}

// rows: prompt p's samples are rows p·SAMPLES ... (p+1)·SAMPLES − 1, row r draws stream r
type Impl = 'static' | 'continuous' | 'continuous-bf16';

async function child(impl: Impl, repeats: number): Promise<void> {
  buildInfo();
  const model = await Model.create(MODELS['6M'], { seed: 1 });
  const c = model.config;
  const prompts = promptTokens(c.vocab);
  const rows = prompts.flatMap((p) => Array.from({ length: SAMPLES }, () => p));
  const B = rows.length;
  const staticKvBytes = 2 * c.layers * B * (PROMPT + NEW) * c.kvHeads * c.headDim * 4;
  const run = async (): Promise<{ tokens: number; check: number; peak: number; prefill?: number; steps?: number }> => {
    if (impl === 'static') {
      const out = await model.generate({
        prompts: rows,
        maxNewTokens: NEW,
        temperature: 1,
        seed: SEED,
        streams: rows.map((_, r) => r),
        stopTokens: STOP,
        staticBatch: true,
      });
      return { ...summary(out.map((o) => o.tokens)), peak: staticKvBytes };
    }
    const blockBytes = 2 * c.layers * BLOCK * c.kvHeads * c.headDim * 4;
    const session = new GenerationSession(model, {
      kvDtype: impl === 'continuous-bf16' ? 'bf16' : 'f32',
      blockSize: BLOCK,
      numBlocks: Math.ceil(staticKvBytes / blockBytes), // the static cache's memory, as blocks
      tokenBudget: 512,
      maxRunning: B,
    });
    const ids = rows.map((p, r) =>
      session.addRequest(p, { maxNewTokens: NEW, temperature: 1, seed: SEED, stream: r, stopTokens: STOP }),
    );
    const done = await session.runUntilIdle();
    const byId = new Map(done.map((d) => [d.id, d.tokens]));
    const stats = session.stats;
    session.dispose();
    return {
      ...summary(ids.map((id) => byId.get(id)!)),
      peak: stats.peakKvBytes,
      prefill: stats.prefillTokens,
      steps: stats.steps,
    };
  };
  const first = await run();
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  process.stdout.write(JSON.stringify({ ms: median(times), ...first, rss: peakRssMB() }) + '\n');
}

function summary(seqs: Int32Array[]): { tokens: number; check: number } {
  let tokens = 0,
    check = 0;
  for (const [r, s] of seqs.entries()) {
    tokens += s.length;
    for (const [i, t] of s.entries()) check = (Math.imul(check, 31) + t * (r + 1) + i) >>> 0;
  }
  return { tokens, check };
}

async function main(): Promise<void> {
  const c = childArgs();
  if (c) return child(c.impl as Impl, c.repeats as number);
  header(
    `rollout: ${PROMPTS} prompts × ${SAMPLES} samples, ${PROMPT}-token prompts, up to ${NEW} new tokens, 6M model`,
  );
  const repeats = quick ? 1 : 2;
  const res = {
    static: runChild(import.meta.url, { impl: 'static', repeats, quick }),
    continuous: runChild(import.meta.url, { impl: 'continuous', repeats, quick }),
    'continuous-bf16': runChild(import.meta.url, { impl: 'continuous-bf16', repeats, quick }),
  };
  if (res.static.check !== res.continuous.check || res.static.tokens !== res.continuous.tokens)
    throw new Error('rollout: the static batch and the session generated different tokens');
  const shape = `6M ${PROMPTS}x${SAMPLES} P${PROMPT} N${NEW}`;
  const rows: (string | number)[][] = [];
  for (const impl of ['static', 'continuous', 'continuous-bf16'] as const) {
    const r = res[impl];
    const tps = r.tokens / (r.ms / 1000);
    if (jsonOutput)
      process.stdout.write(
        JSON.stringify({
          bench: 'rollout',
          impl,
          shape,
          median_ms: r.ms,
          value: tps,
          unit: 'tokens/s',
          peak_kv_bytes: r.peak,
        }) + '\n',
      );
    rows.push([impl, r.tokens, r.ms, tps, r.peak / 2 ** 20]);
  }
  table(['impl', 'generated tokens', 'median ms', 'tokens/s', 'peak KV MiB'], rows);
  const s = res.static,
    k = res.continuous;
  note(
    `continuous/static: ${ratio(k.tokens / k.ms, s.tokens / s.ms)} tokens/s, peak KV ${((100 * k.peak) / s.peak).toFixed(1)}% of static; ` +
      `prompt positions computed ${k.prefill} (static ${PROMPTS * SAMPLES * PROMPT}), session steps ${k.steps}`,
  );
  const h = res['continuous-bf16'];
  note(
    `continuous-bf16/continuous: ${ratio(h.tokens / h.ms, k.tokens / k.ms)} tokens/s, peak KV ${((100 * h.peak) / k.peak).toFixed(1)}% of f32's ` +
      `(${h.tokens} tokens generated vs ${k.tokens}: the bf16 rounding may change draws)`,
  );
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
