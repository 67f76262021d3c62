/**
 * generateRollout in chunks of prompts, with a 'step' event after each, for stages that only
 * generate (labelling pairs, evaluation) and would otherwise show no progress. Chunk c starts at
 * stream streamBase + (first row of c), so the samples are the same as one generateRollout call.
 */
import type { TrainerEmitter } from '../train/events.js';
import { generateRollout, type Rollout } from './generate.js';

export async function generateRolloutInChunks(
  opts: Parameters<typeof generateRollout>[0] & { streams?: undefined },
  progress?: { emitter: TrainerEmitter; stage: string; chunks?: number },
): Promise<Rollout> {
  if (!progress || !Array.isArray(opts.prompts)) return generateRollout(opts);
  const n = opts.samplesPerPrompt ?? 1;
  const per = Math.max(1, Math.ceil(opts.prompts.length / (progress.chunks ?? 20)));
  const total = Math.ceil(opts.prompts.length / per);
  const t0 = performance.now();
  const out: Rollout = { prompts: opts.prompts, samplesPerPrompt: n, samples: [] };
  for (let c = 0, p0 = 0; p0 < opts.prompts.length; c++, p0 += per) {
    const part = await generateRollout({
      ...opts,
      prompts: opts.prompts.slice(p0, p0 + per),
      streamBase: (opts.streamBase ?? 0) + p0 * n,
    });
    for (const s of part.samples) out.samples.push({ ...s, promptIndex: s.promptIndex + p0 });
    const seconds = (performance.now() - t0) / 1000;
    progress.emitter.emit('step', {
      stage: progress.stage,
      step: c + 1,
      totalSteps: total,
      etaSeconds: (seconds / (c + 1)) * (total - c - 1),
      metrics: { responses: out.samples.length },
    });
  }
  return out;
}
