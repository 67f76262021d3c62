// Checks shared by the model-family tests (test/model/<family>.test.ts) against a fixture of
// test/fixtures/models (made by make_model_fixtures.py from the float64 PyTorch reference):
// forward log-probs and entropy, the gradient of every parameter, the greedy continuation (KV
// cache), tensor parallelism, finite differences through chosen parameters, greedy generate ==
// forward argmax, and a save -> load round trip under the Hugging Face names.
import type { Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model } from '../../lib/engine/model.js';
import { packageRoot } from '../../lib/native.js';
import { readSafetensorsHeader, readTensorF32 } from '../../lib/io/safetensors.js';
import { assertClose } from './tolerance.js';
import { parameterGradientMismatches } from './gradcheck.js';

export const modelFixtures = join(packageRoot, 'test', 'fixtures', 'models');

/** The tensors of a fixture's expected*.safetensors (I32 tensors widened to Float32Array). */
export async function fixtureTensors(dir: string, file = 'expected.safetensors'): Promise<Map<string, Float32Array>> {
  const h = await readSafetensorsHeader(join(modelFixtures, dir, file));
  const out = new Map<string, Float32Array>();
  for (const [name, info] of h.tensors) {
    if (info.dtype === 'I32') {
      const raw = readFileSync(h.path).subarray(info.byteOffset, info.byteOffset + info.byteLength);
      out.set(
        name,
        Float32Array.from(new Int32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))),
      );
    } else out.set(name, await readTensorF32(h, name));
  }
  return out;
}

/** atol relative to the tensor's largest magnitude (fp32 engine vs float64 reference). */
export function relTol(ref: Float32Array, rel = 1e-4) {
  let m = 0;
  for (const x of ref) m = Math.max(m, Math.abs(x));
  return { atol: rel * Math.max(m, 1e-6), rtol: 1e-4 };
}

export interface FamilyFixtureOptions {
  /** tensor-parallel degrees to check (default [1, 2]) */
  tensorParallel?: number[];
  /** parameters whose gradient is also checked by finite differences (TP 1) */
  finiteDifferences: RegExp;
  /** tensor names the saved model.safetensors must hold (Hugging Face names of the family's extras) */
  savedNames: RegExp[];
  /** model_type the saved config.json must name */
  modelType: string;
}

/** Every check of the file comment on fixture `name` (B 2, T 12, as make_model_fixtures.py writes). */
export async function checkFamilyFixture(t: Test, name: string, o: FamilyFixtureOptions): Promise<void> {
  const e = await fixtureTensors(name);
  const B = 2,
    T = 12;
  const input = {
    tokens: Int32Array.from(e.get('tokens')!),
    targets: Int32Array.from(e.get('targets')!),
    batch: B,
    seqLen: T,
    lengths: Int32Array.from(e.get('lengths')!),
    entropy: true,
  };
  const greedy = await fixtureTensors(name, 'expected_greedy.safetensors');
  for (const tp of o.tensorParallel ?? [1, 2]) {
    const m = await Model.load(join(modelFixtures, name), { tensorParallel: tp });
    const r = await m.forward(input);
    assertClose(t, r.logprobs, e.get('logprobs')!, relTol(e.get('logprobs')!), `TP ${tp}: logprobs`);
    assertClose(t, r.entropy!, e.get('entropy')!, relTol(e.get('entropy')!), `TP ${tp}: entropy`);
    await m.backward({ dLogprobs: e.get('w_lp')!, dEntropy: e.get('w_ent')! });
    let checked = 0;
    for (const p of m.parameters()) {
      const ref = e.get(`grad.${p.name}`);
      if (!ref) t.fail(`fixture has no gradient for ${p.name}`);
      else if (assertClose(t, await m.getGradient(p.name), ref, relTol(ref, 2e-4), `TP ${tp}: grad ${p.name}`))
        checked++;
    }
    t.equal(checked, m.parameters().length, `TP ${tp}: every gradient`);
    const [seq] = await m.generate({
      prompts: [Int32Array.from(greedy.get('prompt')!)],
      maxNewTokens: 8,
      temperature: 0,
      stopTokens: [],
    });
    t.same(Array.from(seq.tokens), Array.from(greedy.get('tokens')!), `TP ${tp}: greedy continuation (KV cache)`);
    if (tp === 1) {
      // gradient checkpointing: the recomputed layers give the same gradients
      m.gradientCheckpointing = true;
      await m.zeroGrad();
      await m.forward(input);
      await m.backward({ dLogprobs: e.get('w_lp')!, dEntropy: e.get('w_ent')! });
      let same = 0;
      for (const p of m.parameters())
        if (
          assertClose(
            t,
            await m.getGradient(p.name),
            e.get(`grad.${p.name}`)!,
            relTol(e.get(`grad.${p.name}`)!, 2e-4),
            `checkpointed: grad ${p.name}`,
          )
        )
          same++;
      t.equal(same, m.parameters().length, 'gradient checkpointing: every gradient');
      m.gradientCheckpointing = false;
      await checkFiniteDifferences(t, m, input, o.finiteDifferences);
      await checkGreedyIsArgmax(t, m, Int32Array.from(e.get('tokens')!.subarray(0, 6)));
      await checkSaveLoad(t, m, input, o);
    }
    m.dispose();
  }
}

type Input = { tokens: Int32Array; targets: Int32Array; batch: number; seqLen: number; lengths: Int32Array };

async function checkFiniteDifferences(t: Test, m: Model, input: Input, which: RegExp): Promise<void> {
  const w = new Float32Array(input.tokens.length);
  for (let i = 0; i < w.length; i++) if (input.targets[i] >= 0) w[i] = ((i * 7) % 5) - 2;
  const loss = async () => {
    const out = await m.forward({ ...input, entropy: false });
    let s = 0;
    for (let i = 0; i < w.length; i++) s += w[i] * out.logprobs[i];
    return s;
  };
  const params = m.parameters().filter((p) => which.test(p.name));
  t.ok(params.length > 0, `finite differences: parameters matching ${which}`);
  for (const p of params) {
    await m.zeroGrad();
    await m.forward({ ...input, entropy: false });
    await m.backward({ dLogprobs: w });
    t.same(
      await parameterGradientMismatches(m, p, await m.getGradient(p.name), loss),
      [],
      `finite differences: ${p.name}`,
    );
  }
}

/** Greedy generation (KV cache) picks, at every step, the argmax of forward's logits over the whole sequence. */
async function checkGreedyIsArgmax(t: Test, m: Model, prompt: Int32Array): Promise<void> {
  const n = 10;
  const [seq] = await m.generate({ prompts: [prompt], maxNewTokens: n, temperature: 0, stopTokens: [] });
  const all = Int32Array.from([...prompt, ...seq.tokens]);
  const T = all.length - 1;
  const r = await m.forward({ tokens: all.subarray(0, T), batch: 1, seqLen: T, logits: true });
  const V = m.config.vocab;
  const picks: number[] = [];
  for (let i = prompt.length - 1; i < T; i++) {
    const row = r.logits!.subarray(i * V, (i + 1) * V);
    let best = 0;
    for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
    picks.push(best);
  }
  t.same(Array.from(seq.tokens.subarray(0, n)), picks, 'greedy generate == forward argmax at every step');
}

async function checkSaveLoad(t: Test, m: Model, input: Input, o: FamilyFixtureOptions): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-family-'));
  try {
    await m.save(dir);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    t.same(cfg.architectures, [m.config.architecture], 'saved config: architecture');
    t.equal(cfg.model_type, o.modelType, 'saved config: model_type');
    const names = [...(await readSafetensorsHeader(join(dir, 'model.safetensors'))).tensors.keys()];
    for (const re of o.savedNames)
      t.ok(
        names.some((n) => re.test(n)),
        `saved tensors include ${re}`,
      );
    const back = await Model.load(dir);
    const { hf: _b, ...parsedBack } = back.config;
    const { hf: _m, ...parsed } = m.config;
    t.same(parsedBack, parsed, 'config round trip: the same parsed config');
    const a = await m.forward({ ...input, entropy: false });
    const b = await back.forward({ ...input, entropy: false });
    t.same(Array.from(b.logprobs), Array.from(a.logprobs), 'save -> load: identical log-probs');
    back.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
