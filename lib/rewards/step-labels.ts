/**
 * Monte-Carlo step labels for process reward models (docs/algorithms.md §4: "a step is positive if
 * continuations from it reach the correct answer", Math-Shepherd's construction): for every step i
 * of a response, `rollouts` completions are sampled from the policy after prompt ++ steps 0..i
 * (each followed by the separator, encoded as lib/data/steps.ts does), the full response
 * steps 0..i ++ completion is checked, and the label is the fraction judged correct (`soft`,
 * default) or 1 if any is (`hard`).
 *
 * Reproducible: completion j of step i of record r draws from Philox stream
 * streamBase + ((r · S + i) · rollouts + j) of `seed` (S = the most steps of any record), so a
 * record's labels do not depend on the batch it is generated in.
 */
import type { Model } from '../engine/model.js';
import { encodeSteps, type Prompt, type StepRecord } from '../data/index.js';
import { decodeResponse } from '../rollout/generate.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { options, typeError } from '../validate.js';

export interface StepLabelOptions {
  policy: Model;
  tokenizer: Tokenizer;
  /** responses to label: their prompt and steps */
  records: Array<{ prompt: Prompt; steps: string[] }>;
  /** does this full response reach the right answer? (true/false or a score in [0, 1]) */
  isCorrect: (
    record: { prompt: Prompt; steps: string[] },
    response: string,
  ) => boolean | number | Promise<boolean | number>;
  /** completions per step (default 4) */
  rollouts?: number;
  /** 'soft': fraction correct (default); 'hard': 1 if any completion is correct */
  mode?: 'soft' | 'hard';
  /** default "\n" */
  separator?: string;
  maxNewTokens?: number;
  temperature?: number;
  seed?: number;
  streamBase?: number;
  /** rows per generate() call (default 64) */
  batchSize?: number;
}

/** Labels every step of every record by sampling continuations; returns {prompt, steps, labels} records. */
export async function monteCarloStepLabels(opts: StepLabelOptions): Promise<StepRecord[]> {
  const fn = 'monteCarloStepLabels';
  const o = options(fn, 'options', opts);
  o.known([
    'policy',
    'tokenizer',
    'records',
    'isCorrect',
    'rollouts',
    'mode',
    'separator',
    'maxNewTokens',
    'temperature',
    'seed',
    'streamBase',
    'batchSize',
  ]);
  const { policy, tokenizer: tok, records, isCorrect } = opts;
  if (!policy || !tok) throw typeError(fn, 'options.policy', 'a Model and options.tokenizer', policy);
  if (typeof isCorrect !== 'function')
    throw typeError(fn, 'options.isCorrect', 'a function (record, response) => boolean | number', isCorrect);
  if (!Array.isArray(records) || records.length === 0)
    throw typeError(fn, 'options.records', 'a non-empty array of {prompt, steps}', records);
  records.forEach((r, i) => {
    if (!Array.isArray(r?.steps) || r.steps.length === 0 || !r.steps.every((s) => typeof s === 'string'))
      throw typeError(fn, `options.records[${i}].steps`, 'a non-empty array of strings', r?.steps);
  });
  const k = o.int('rollouts', { min: 1 }, 4);
  const mode = o.oneOf('mode', ['soft', 'hard'] as const, 'soft');
  const sep = o.string('separator', '\n');
  if (sep === '') throw typeError(fn, 'options.separator', 'a non-empty string', sep);
  const maxNewTokens = o.int('maxNewTokens', { min: 1 }, 64);
  const temperature = o.number('temperature', { min: 0 }, 1);
  const seed = o.int('seed', { min: 0 }, 0);
  const streamBase = o.int('streamBase', { min: 0 }, 0);
  const batchSize = o.int('batchSize', { min: 1 }, 64);
  const S = Math.max(...records.map((r) => r.steps.length));

  // one job per (record, step, rollout)
  const jobs: Array<{ r: number; i: number; prefix: Int32Array; stream: number }> = [];
  records.forEach((rec, r) => {
    const e = encodeSteps(tok, rec.prompt, rec.steps, sep);
    rec.steps.forEach((_, i) => {
      const prefix = Int32Array.from([
        ...e.promptIds,
        ...e.responseIds.subarray(0, e.stepEnds[i] + 1 - e.promptIds.length),
      ]);
      for (let j = 0; j < k; j++) jobs.push({ r, i, prefix, stream: streamBase + (r * S + i) * k + j });
    });
  });
  const verdicts = records.map((rec) => rec.steps.map(() => [] as number[]));
  for (let j0 = 0; j0 < jobs.length; j0 += batchSize) {
    const chunk = jobs.slice(j0, j0 + batchSize);
    const out = await policy.generate({
      prompts: chunk.map((j) => j.prefix),
      maxNewTokens,
      temperature,
      seed,
      streams: chunk.map((j) => j.stream),
      stopTokens: tok.stopIds,
    });
    for (let c = 0; c < chunk.length; c++) {
      const { r, i } = chunk[c],
        g = out[c];
      const ids = g.finishReason === 'stop' ? g.tokens.subarray(0, g.tokens.length - 1) : g.tokens;
      const response =
        records[r].steps
          .slice(0, i + 1)
          .map((s) => s + sep)
          .join('') + decodeResponse(tok, ids);
      const v = await isCorrect(records[r], response);
      const x = typeof v === 'boolean' ? Number(v) : v;
      if (typeof x !== 'number' || !(x >= 0 && x <= 1))
        throw typeError(fn, 'options.isCorrect', 'to return a boolean or a number in [0, 1]', v);
      verdicts[r][i].push(x);
    }
  }
  return records.map((rec, r) => ({
    prompt: rec.prompt,
    steps: rec.steps.slice(),
    labels: verdicts[r].map((v) =>
      mode === 'hard' ? Number(v.some((x) => x >= 0.5)) : v.reduce((a, b) => a + b, 0) / v.length,
    ),
  }));
}
