// Tensor parallelism (native/model/tensor_parallel.h): TP = 1, 2 and 4 agree — log-probs, entropy
// and values, every gathered gradient, 20-step AdamW trajectories with clipping on the global norm,
// greedy generations token for token — for a Llama-style model (uneven FFN and vocabulary splits),
// a Qwen2-style one with a single KV head (replicated over the ranks, its gradient summed)
// and a GLM-4-style one (fused gate_up, QKV bias, interleaved partial RoPE, tied embeddings) with a
// scalar head; checkpoints stay in the unsharded Hugging Face layout.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdamW } from '../../lib/engine/adamw.js';
import { setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { assertClose, bitwiseEqual } from '../helpers/tolerance.js';
import { Rng } from '../helpers/random.js';

setThreads(1);
// vocab 262 and ffn 90 do not divide by 4: ranks get uneven shares
const llama = tinyConfig({ vocab: 262, hidden: 64, layers: 2, heads: 8, kvHeads: 4, ffn: 90, maxPositions: 128 });
// one KV head (with QKV bias): at TP 2 and 4 every rank holds a copy of it (KV replication)
const mqa = tinyConfig({
  family: 'qwen2',
  vocab: 262,
  hidden: 64,
  layers: 2,
  heads: 8,
  kvHeads: 1,
  ffn: 90,
  maxPositions: 128,
});
const glm = tinyConfig({
  family: 'glm',
  vocab: 262,
  hidden: 64,
  layers: 2,
  heads: 8,
  kvHeads: 4,
  ffn: 88,
  maxPositions: 128,
  tieEmbeddings: true,
  valueHead: true,
});
const B = 3,
  T = 12,
  N = B * T;
const rng = new Rng(7);
const tokens = Int32Array.from({ length: N }, () => rng.int(0, 261));
const targets = Int32Array.from({ length: N }, (_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
const lengths = Int32Array.from([12, 9, 5]);
const dLogprobs = Float32Array.from({ length: N }, () => rng.normal());
const dEntropy = Float32Array.from({ length: N }, () => rng.normal() * 0.5);
const dValues = Float32Array.from({ length: N }, () => rng.normal());
const TOL = { atol: 2e-5, rtol: 2e-4 };

async function gradients(m: Model): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const p of m.parameters()) out.set(p.name, await m.getGradient(p.name));
  return out;
}

/** Every gradient tensor close to the reference, relative to the tensor's largest entry. */
function closeTensors(
  t: Test,
  got: Map<string, Float32Array>,
  ref: Map<string, Float32Array>,
  label: string,
  rel = 2e-4,
): void {
  const bad: string[] = [];
  for (const [name, r] of ref) {
    const g = got.get(name)!;
    let scale = 0,
      err = 0;
    for (let i = 0; i < r.length; i++)
      ((scale = Math.max(scale, Math.abs(r[i]))), (err = Math.max(err, Math.abs(g[i] - r[i]))));
    if (!(err <= rel * scale + 1e-7))
      bad.push(`${name}: max err ${err.toExponential(2)} vs scale ${scale.toExponential(2)}`);
  }
  t.same(bad, [], `${label}: every tensor within ${rel}·max|ref|`);
}

for (const [family, config] of [
  ['llama', llama],
  ['glm', glm],
  ['qwen2 1 KV head', mqa],
] as const) {
  t.test(`${family}: forward, backward and generation agree across TP = 1, 2, 4`, async (t) => {
    const ref = await Model.create(config, { seed: 5, initStd: 0.2 });
    const value = ref.config.valueHead;
    const f1 = await ref.forward({
      tokens,
      targets: ref.config.lmHead ? targets : undefined,
      lengths,
      batch: B,
      seqLen: T,
      entropy: ref.config.lmHead,
      values: value,
    });
    await ref.backward({
      dLogprobs: ref.config.lmHead ? dLogprobs : undefined,
      dEntropy: ref.config.lmHead ? dEntropy : undefined,
      dValues: value ? dValues : undefined,
    });
    const g1 = await gradients(ref);
    // a second forward/backward accumulates onto the first (as gradient accumulation does)
    const pass = async (m: Model) => {
      await m.forward({
        tokens,
        targets: ref.config.lmHead ? targets : undefined,
        lengths,
        batch: B,
        seqLen: T,
        entropy: ref.config.lmHead,
        values: value,
      });
      await m.backward({
        dLogprobs: ref.config.lmHead ? dLogprobs : undefined,
        dEntropy: ref.config.lmHead ? dEntropy : undefined,
        dValues: value ? dValues : undefined,
      });
    };
    await pass(ref);
    const g2 = await gradients(ref);
    for (const tp of [2, 4]) {
      const m = await Model.create(config, { seed: 5, initStd: 0.2, tensorParallel: tp });
      t.equal(m.tensorParallel, tp);
      t.equal(m.numParameters, ref.numParameters, `TP ${tp}: the same (unsharded) parameter count`);
      let same = true;
      for (const p of ref.parameters())
        same &&= bitwiseEqual(await m.getParameter(p.name), await ref.getParameter(p.name));
      t.ok(same, `TP ${tp}: initialisation gathers to the TP 1 weights bit for bit`);
      const f = await m.forward({
        tokens,
        targets: ref.config.lmHead ? targets : undefined,
        lengths,
        batch: B,
        seqLen: T,
        entropy: ref.config.lmHead,
        values: value,
      });
      if (ref.config.lmHead) {
        assertClose(t, f.logprobs, f1.logprobs, TOL, `TP ${tp} log-probs`);
        assertClose(t, f.entropy!, f1.entropy!, TOL, `TP ${tp} entropy`);
      }
      if (value) assertClose(t, f.values!, f1.values!, TOL, `TP ${tp} values`);
      await m.backward({
        dLogprobs: ref.config.lmHead ? dLogprobs : undefined,
        dEntropy: ref.config.lmHead ? dEntropy : undefined,
        dValues: value ? dValues : undefined,
      });
      closeTensors(t, await gradients(m), g1, `TP ${tp} gradients`);
      await pass(m);
      closeTensors(t, await gradients(m), g2, `TP ${tp} gradients accumulated over two backward calls`);
      m.dispose();
    }
    ref.dispose();
  });
}

t.test('generation: greedy tokens identical to TP 1; sampled log-probs equal forward bit for bit', async (t) => {
  const prompts = [[1, 2, 3, 4], [9], [20, 21, 22]];
  for (const config of [llama, mqa]) {
    const ref = await Model.create(config, { seed: 2, initStd: 0.5 });
    const g1 = await ref.generate({ prompts, maxNewTokens: 10, temperature: 0 });
    for (const tp of [2, 4]) {
      const m = await Model.create(config, { seed: 2, initStd: 0.5, tensorParallel: tp });
      const g = await m.generate({ prompts, maxNewTokens: 10, temperature: 0 });
      t.same(
        g.map((x) => Array.from(x.tokens)),
        g1.map((x) => Array.from(x.tokens)),
        `TP ${tp}: greedy tokens`,
      );
      for (const temperature of [1, 0.7]) {
        const s = await m.generate({ prompts, maxNewTokens: 10, temperature, seed: 4 });
        for (let r = 0; r < prompts.length; r++) {
          const seq = [...prompts[r], ...s[r].tokens];
          const tg = new Int32Array(seq.length).fill(-1);
          for (let i = prompts[r].length - 1; i < seq.length - 1; i++) tg[i] = seq[i + 1];
          const f = await m.forward({
            tokens: Int32Array.from(seq),
            targets: tg,
            batch: 1,
            seqLen: seq.length,
            temperature,
            saveForBackward: false,
          });
          t.ok(
            bitwiseEqual(f.logprobs.slice(prompts[r].length - 1, seq.length - 1), s[r].logprobs),
            `TP ${tp} T ${temperature} row ${r}: generate log-probs == forward (bitwise)`,
          );
        }
      }
      m.dispose();
    }
    ref.dispose();
  }
});

t.test('20 AdamW steps: the same trajectory at TP 1, 2, 4 (clipping on the global norm)', async (t) => {
  for (const [label, config] of [
    ['llama', llama],
    ['1 KV head, replicated', mqa],
  ] as const) {
    const run = async (tp: number) => {
      const m = await Model.create(config, { seed: 9, initStd: 0.2, tensorParallel: tp });
      const opt = new AdamW(m, { lr: 3e-3, weightDecay: 0.1, maxGradNorm: 0.5 });
      const norms: number[] = [];
      const scale = Float32Array.from({ length: N }, (_, i) =>
        targets[i] >= 0 && i % T < lengths[Math.floor(i / T)] ? -1 / N : 0,
      );
      for (let s = 0; s < 20; s++) {
        await m.zeroGrad();
        await m.forward({ tokens, targets, lengths, batch: B, seqLen: T });
        await m.backward({ dLogprobs: scale });
        norms.push((await opt.step()).gradNorm);
      }
      const f = await m.forward({ tokens, targets, lengths, batch: B, seqLen: T, saveForBackward: false });
      const params = new Map<string, Float32Array>();
      for (const p of m.parameters()) params.set(p.name, await m.getParameter(p.name));
      m.dispose();
      return { norms, logprobs: f.logprobs, params };
    };
    const r1 = await run(1);
    t.ok(
      r1.norms[0] > 0.5,
      `${label}: the gradient norm (${r1.norms[0].toFixed(3)}) exceeds maxGradNorm: clipping is exercised`,
    );
    for (const tp of [2, 4]) {
      const r = await run(tp);
      assertClose(
        t,
        r.norms,
        r1.norms,
        { atol: 1e-6, rtol: 1e-4 },
        `${label} TP ${tp} gradient norms (each parameter counted once)`,
      );
      assertClose(t, r.logprobs, r1.logprobs, { atol: 1e-4, rtol: 1e-3 }, `${label} TP ${tp} log-probs after 20 steps`);
      closeTensors(t, r.params, r1.params, `${label} TP ${tp} weights after 20 steps`, 1e-3);
    }
  }
});

t.test('checkpoints: a TP model saves the unsharded layout and loads at any TP', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-tp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const m = await Model.create(glm, { seed: 3, tensorParallel: 2 });
  await m.save(join(dir, 'ck'));
  const back1 = await Model.load(join(dir, 'ck'));
  const back4 = await Model.load(join(dir, 'ck'), { tensorParallel: 4 });
  let same = true;
  for (const p of m.parameters()) {
    const w = await m.getParameter(p.name);
    same &&= bitwiseEqual(await back1.getParameter(p.name), w) && bitwiseEqual(await back4.getParameter(p.name), w);
  }
  t.ok(same, 'TP 2 → file → TP 1 and TP 4: every tensor bit for bit');
  const c = await back4.clone();
  t.equal(c.tensorParallel, 4, 'clones keep the tensor-parallel size');
  for (const x of [m, back1, back4, c]) x.dispose();
});

t.test('bad tensorParallel values are named', async (t) => {
  await t.rejects(
    Model.create(llama, { tensorParallel: 3 }),
    /Model\.create: expected options\.tensorParallel to divide num_attention_heads \(8\) and to divide num_key_value_heads \(4\) or be a multiple of it, received 3/,
  );
  await t.rejects(Model.create(llama, { tensorParallel: 0 }), /options\.tensorParallel/);
  await t.rejects(
    Model.create(tinyConfig({ vocab: 262, hidden: 96, layers: 1, heads: 12, kvHeads: 4, ffn: 64 }), {
      tensorParallel: 6,
    }),
    /num_key_value_heads \(4\) or be a multiple/,
  );
});
