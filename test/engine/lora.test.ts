// LoRA (lib/engine/lora.ts, native/model layout + transformer + backward): a fresh adapter leaves
// the model unchanged bit for bit (B = 0); adapter gradients pass finite differences on every
// module kind (Llama: separate gate/up; GLM-4: fused gate_up; a scalar head); the base gets no
// gradient and AdamW moves only the adapters (and the scalar head); forward equals the merged
// weights; generate's log-probs equal forward's; save → PEFT adapter folder → load is exact, and a
// merged save is a plain checkpoint; SFT with LoRA lowers the loss; withoutAdapters() is the base
// model on the same weights, and DPO uses it as the reference (no copy, exact resume); bad options
// are named.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdamW } from '../../lib/engine/adamw.js';
import { nativeMemoryInUse, nativeWorkspaceBytes, setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { readSafetensorsHeader } from '../../lib/io/safetensors.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { PreferenceTrainer } from '../../lib/train/preference.js';
import { SFTTrainer } from '../../lib/train/sft.js';
import { assertClose, bitwiseEqual } from '../helpers/tolerance.js';
import { parameterGradientMismatches } from '../helpers/gradcheck.js';
import { Rng } from '../helpers/random.js';

setThreads(1);
const llama = tinyConfig({ vocab: 61, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64 });
const glmRm = tinyConfig({
  family: 'glm',
  vocab: 61,
  hidden: 32,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 40,
  maxPositions: 64,
  valueHead: true,
});
const B = 2,
  T = 7,
  N = B * T;
const rng = new Rng(3);
const tokens = Int32Array.from({ length: N }, () => rng.int(0, 60));
const targets = Int32Array.from({ length: N }, (_, i) => (i % T === T - 1 ? -1 : tokens[i + 1]));
const lengths = [T, 5];

/** Gives every B a random value (a fresh adapter's B is 0, which hides A's gradient). */
async function randomizeB(m: Model, seed: number): Promise<void> {
  const r = new Rng(seed);
  for (const p of m.parameters())
    if (p.name.includes('.lora_B.'))
      await m.setParameter(
        p.name,
        Float32Array.from({ length: p.size }, () => r.normal() * 0.3),
      );
}

t.test("a fresh adapter changes nothing (B = 0); its names and counts are PEFT's", async (t) => {
  const base = await Model.create(llama, { seed: 1, initStd: 0.3 });
  const m = await Model.create(llama, { seed: 1, initStd: 0.3, lora: { rank: 4, modules: 'all-linear' } });
  t.same(m.lora, {
    rank: 4,
    alpha: 8,
    modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  });
  const names = m.parameters().map((p) => p.name);
  t.ok(names.includes('base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight'));
  t.ok(names.includes('base_model.model.model.layers.0.mlp.down_proj.lora_B.weight'));
  // per layer: A (4 × in) + B (out × 4) for q, k, v (in 32; out 32, 16, 16), o (in 32, out 32), gate/up (32 → 48), down (48 → 32)
  const perLayer = 4 * (32 + 32) + 4 * (32 + 16) * 2 + 4 * (32 + 32) + 2 * 4 * (32 + 48) + 4 * (48 + 32);
  t.equal(m.numTrainableParameters, 2 * perLayer);
  t.equal(m.numParameters, base.numParameters + 2 * perLayer);
  for (const p of base.parameters())
    if (!bitwiseEqual(await m.getParameter(p.name), await base.getParameter(p.name))) t.fail(p.name);
  const f0 = await base.forward({ tokens, targets, batch: B, seqLen: T, lengths, saveForBackward: false });
  const f1 = await m.forward({ tokens, targets, batch: B, seqLen: T, lengths, saveForBackward: false });
  t.ok(bitwiseEqual(f1.logprobs, f0.logprobs), 'log-probs bitwise');
  base.dispose();
  m.dispose();
});

for (const [label, config, modules] of [
  ['llama, every module', llama, 'all-linear'],
  [
    'glm reward model: fused gate_up, qkv bias, scalar head',
    glmRm,
    ['q_proj', 'v_proj', 'o_proj', 'gate_up_proj', 'down_proj'],
  ],
] as const) {
  t.test(
    `${label}: adapter gradients by finite differences; the base gets none; AdamW moves only the adapters`,
    async (t) => {
      const m = await Model.create(config, {
        seed: 2,
        initStd: 0.3,
        lora: { rank: 3, alpha: 5, modules: modules as never },
      });
      await randomizeB(m, 4);
      const isRm = m.config.valueHead;
      const r2 = new Rng(5);
      const wl = Float32Array.from({ length: N }, () => r2.normal()),
        wv = Float32Array.from({ length: N }, () => r2.normal());
      const loss = async () => {
        const f = await m.forward({
          tokens,
          targets: isRm ? undefined : targets,
          batch: B,
          seqLen: T,
          lengths,
          values: isRm,
          saveForBackward: false,
        });
        let s = 0;
        for (let i = 0; i < N; i++) s += isRm ? wv[i] * f.values![i] : wl[i] * f.logprobs[i];
        return s;
      };
      await m.forward({ tokens, targets: isRm ? undefined : targets, batch: B, seqLen: T, lengths, values: isRm });
      await m.backward(isRm ? { dValues: wv } : { dLogprobs: wl });
      const bad: string[] = [];
      let adapters = 0;
      for (const p of m.parameters()) {
        const grad = await m.getGradient(p.name);
        const trainable = p.name.includes('.lora_') || p.name === 'score.weight';
        if (!trainable) {
          if (!/norm/.test(p.name) && grad.some((g) => g !== 0)) bad.push(`${p.name}: a frozen weight has a gradient`);
          continue;
        }
        adapters++;
        bad.push(...(await parameterGradientMismatches(m, p, grad, loss)));
      }
      t.same(
        bad,
        [],
        `${adapters} trainable tensors × 3 entries by finite differences; frozen weights without gradients`,
      );
      const before = new Map<string, Float32Array>();
      for (const p of m.parameters()) before.set(p.name, await m.getParameter(p.name));
      const opt = new AdamW(m, { lr: 1e-2, weightDecay: 0.1 });
      await opt.step();
      const moved: string[] = [],
        frozenMoved: string[] = [];
      for (const p of m.parameters()) {
        const same = bitwiseEqual(await m.getParameter(p.name), before.get(p.name)!);
        const trainable = p.name.includes('.lora_') || p.name === 'score.weight';
        if (!trainable && !same) frozenMoved.push(p.name);
        if (trainable && !same) moved.push(p.name);
      }
      t.same(frozenMoved, [], 'no base weight moved');
      t.equal(moved.length, adapters, 'every adapter (and the scalar head) moved');
      opt.dispose();
      m.dispose();
    },
  );
}

t.test(
  'forward equals the merged weights; generate log-probs equal forward; save/load (PEFT folder) and merged save',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-lora-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const m = await Model.create(llama, {
      seed: 6,
      initStd: 0.3,
      lora: { rank: 2, alpha: 3, modules: ['q_proj', 'k_proj', 'o_proj', 'up_proj', 'down_proj'] },
    });
    await randomizeB(m, 7);
    const f = await m.forward({ tokens, targets, batch: B, seqLen: T, lengths, saveForBackward: false });
    await m.save(join(dir, 'merged'), { mergeLora: true });
    t.notOk(existsSync(join(dir, 'merged', 'adapter')), 'a merged save has no adapter');
    const merged = await Model.load(join(dir, 'merged'));
    t.equal(merged.lora, undefined);
    const fm = await merged.forward({ tokens, targets, batch: B, seqLen: T, lengths, saveForBackward: false });
    assertClose(t, fm.logprobs, f.logprobs, { atol: 2e-5, rtol: 2e-4 }, 'merged weights give the same log-probs');
    const g = await m.generate({ prompts: [[1, 2, 3], [9]], maxNewTokens: 6, temperature: 1, seed: 2 });
    for (const [r, prompt] of [[1, 2, 3], [9]].entries()) {
      const seq = [...prompt, ...g[r].tokens];
      const tg = new Int32Array(seq.length).fill(-1);
      for (let i = prompt.length - 1; i < seq.length - 1; i++) tg[i] = seq[i + 1];
      const fr = await m.forward({
        tokens: Int32Array.from(seq),
        targets: tg,
        batch: 1,
        seqLen: seq.length,
        saveForBackward: false,
      });
      t.ok(
        bitwiseEqual(fr.logprobs.slice(prompt.length - 1, seq.length - 1), g[r].logprobs),
        `row ${r}: generate log-probs == forward (bitwise)`,
      );
    }
    await m.save(join(dir, 'ck'));
    const cfg = JSON.parse(readFileSync(join(dir, 'ck', 'adapter', 'adapter_config.json'), 'utf8'));
    t.match(cfg, {
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 2,
      lora_alpha: 3,
      target_modules: ['q_proj', 'k_proj', 'o_proj', 'up_proj', 'down_proj'],
    });
    const h = await readSafetensorsHeader(join(dir, 'ck', 'adapter', 'adapter_model.safetensors'));
    t.ok(h.tensors.has('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'), 'PEFT tensor names');
    const base = await readSafetensorsHeader(join(dir, 'ck', 'model.safetensors'));
    t.notOk(
      [...base.tensors.keys()].some((n) => n.includes('lora')),
      'the base checkpoint holds no adapter tensor',
    );
    const back = await Model.load(join(dir, 'ck'));
    t.same(back.lora, m.lora, 'the adapter is found again');
    let same = true;
    for (const p of m.parameters())
      same &&= bitwiseEqual(await back.getParameter(p.name), await m.getParameter(p.name));
    t.ok(same, 'every tensor bit for bit');
    const fresh = await Model.load(join(dir, 'merged'), { lora: { rank: 2 } });
    t.ok(
      bitwiseEqual(
        (await fresh.forward({ tokens, targets, batch: B, seqLen: T, lengths, saveForBackward: false })).logprobs,
        fm.logprobs,
      ),
      'new adapters on a loaded checkpoint start at B = 0',
    );
    const c = await m.clone();
    t.same(c.lora, m.lora, 'clones keep the adapter');
    for (const x of [m, merged, back, fresh, c]) x.dispose();
  },
);

t.test('SFT with LoRA lowers the loss; only the adapters train', async (t) => {
  const tok = new ByteTokenizer();
  // a base with weights of some scale: a frozen random LM head at std 0.02 cannot express confident logits
  const m = await Model.create(
    tinyConfig({
      vocab: 264,
      hidden: 32,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      ffn: 64,
      maxPositions: 64,
      eosTokenId: tok.eosId,
    }),
    { seed: 3, initStd: 0.5, lora: { rank: 8, modules: 'all-linear' } },
  );
  const embed = await m.getParameter('model.embed_tokens.weight');
  const data = Array.from({ length: 16 }, (_, i) => ({
    kind: 'completion' as const,
    prompt: `n${i % 4}:`,
    completion: 'abcabc',
  }));
  const trainer = new SFTTrainer({
    model: m,
    tokenizer: tok,
    train: data,
    eval: data,
    seqLen: 16,
    batchSize: 8,
    epochs: 30,
    lr: 3e-2,
  });
  const losses: number[] = [];
  trainer.on('step', (e) => losses.push(e.metrics.loss));
  const r = await trainer.train();
  t.ok(r.evalLoss! < losses[0] * 0.6, `loss ${losses[0].toFixed(3)} -> eval ${r.evalLoss!.toFixed(3)}`);
  t.ok(bitwiseEqual(await m.getParameter('model.embed_tokens.weight'), embed), 'the embedding is frozen');
  m.dispose();
});

t.test('gradient checkpointing recomputes the adapters too: gradients bit-identical', async (t) => {
  const grads = async (ckpt: boolean) => {
    const m = await Model.create(llama, { seed: 8, initStd: 0.3, lora: { rank: 2, modules: 'all-linear' } });
    await randomizeB(m, 9);
    m.gradientCheckpointing = ckpt;
    await m.forward({ tokens, targets, batch: B, seqLen: T, lengths });
    await m.backward({ dLogprobs: new Float32Array(N).fill(-0.1) });
    const out: Float32Array[] = [];
    for (const p of m.parameters()) if (p.name.includes('lora')) out.push(await m.getGradient(p.name));
    m.dispose();
    return out;
  };
  const [a, b] = [await grads(false), await grads(true)];
  t.ok(
    a.every((g, i) => bitwiseEqual(g, b[i])),
    `${a.length} adapter gradients bitwise`,
  );
});

t.test('withoutAdapters(): the base model, sharing the weights; inference only', async (t) => {
  const m = await Model.create(llama, { seed: 10, initStd: 0.3, lora: { rank: 2, modules: 'all-linear' } });
  await randomizeB(m, 11);
  const plain = await Model.create(llama, { seed: 10, initStd: 0.3 });
  const view = m.withoutAdapters();
  t.equal(view.adaptersOf, m);
  t.equal(view.lora, undefined);
  t.equal(view.numParameters, plain.numParameters, 'the view lists the base parameters only');
  const fv = await view.forward({ tokens, targets, batch: B, seqLen: T, lengths });
  const fp = await plain.forward({ tokens, targets, batch: B, seqLen: T, lengths, saveForBackward: false });
  const fm = await m.forward({ tokens, targets, batch: B, seqLen: T, lengths, saveForBackward: false });
  t.ok(bitwiseEqual(fv.logprobs, fp.logprobs), 'view forward == the base model (bitwise)');
  t.notOk(bitwiseEqual(fm.logprobs, fp.logprobs), 'the adapted model differs');
  const gv = await view.generate({ prompts: [[4, 5]], maxNewTokens: 5, seed: 3 });
  const gp = await plain.generate({ prompts: [[4, 5]], maxNewTokens: 5, seed: 3 });
  t.same(Array.from(gv[0].tokens), Array.from(gp[0].tokens), 'view generate == the base model');
  t.ok(bitwiseEqual(gv[0].logprobs, gp[0].logprobs));
  t.throws(
    () => view.forward({ tokens, targets, batch: B, seqLen: T, saveForBackward: true }),
    /saveForBackward.*withoutAdapters/,
  );
  t.throws(() => view.backward({ dLogprobs: new Float32Array(N) }), /withoutAdapters\(\) view is for inference/);
  t.throws(
    () => view.setParameter('model.norm.weight', new Float32Array(32)),
    /withoutAdapters\(\) view is for inference/,
  );
  t.throws(() => new AdamW(view), /view is for inference/);
  t.throws(() => plain.withoutAdapters(), /no LoRA adapters/);
  view.dispose();
  t.ok(
    (await m.forward({ tokens, targets, batch: B, seqLen: T, saveForBackward: false })).logprobs.length === N,
    'disposing the view leaves the model',
  );
  const view2 = m.withoutAdapters();
  m.dispose();
  t.throws(() => view2.forward({ tokens, targets, batch: B, seqLen: T }), { code: 'ERR_RLHF_DISPOSED' });
  plain.dispose();
});

t.test('DPO on a LoRA policy: the reference is its base (no copy); starts at log 2; exact resume', async (t) => {
  const tok = new ByteTokenizer();
  const cfg = tinyConfig({
    vocab: 264,
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    maxPositions: 64,
    eosTokenId: tok.eosId,
  });
  const pairs = Array.from({ length: 16 }, (_, i) => ({ prompt: `p${i % 4}:`, chosen: 'aaa', rejected: `b${i % 3}c` }));
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-lora-dpo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = async (out: string | undefined, resume: boolean, stopAt?: number) => {
    const policy = await Model.create(cfg, { seed: 12, initStd: 0.5, lora: { rank: 4, modules: 'all-linear' } });
    const before = nativeMemoryInUse(),
      ws0 = nativeWorkspaceBytes();
    const trainer = new PreferenceTrainer({
      policy,
      tokenizer: tok,
      loss: 'dpo',
      beta: 0.5,
      train: pairs,
      seqLen: 16,
      batchSize: 8,
      epochs: 4,
      lr: 1e-2,
      ...(out ? { outputDir: join(dir, out) } : {}),
      ...(resume ? { resumeFrom: 'latest' } : {}),
    });
    const losses: number[] = [];
    trainer.on('step', (e) => {
      losses.push(e.metrics.loss);
      if (e.step === stopAt) trainer.requestStop();
    });
    const r = await trainer.train();
    policy.releaseActivations();
    // AdamW moments of the adapters (+ outputs JS still holds); kernel workspaces apart
    const grown = nativeMemoryInUse() - before - (nativeWorkspaceBytes() - ws0);
    const baseBytes = 4 * trainer.reference!.numParameters;
    const params: Float32Array[] = [];
    for (const p of policy.parameters()) params.push(await policy.getParameter(p.name));
    t.equal(trainer.reference!.adaptersOf, policy, 'the reference is policy.withoutAdapters()');
    policy.dispose();
    return { r, losses, params, grown, baseBytes };
  };
  const a = await run(undefined, false); // no checkpoints: their parameter reads would wait for GC in nativeMemoryInUse
  t.ok(Math.abs(a.losses[0] - Math.log(2)) < 1e-6, `first loss ${a.losses[0]} = log 2 (B = 0: policy == its base)`);
  t.ok(a.losses.at(-1)! < a.losses[0] - 0.1, `loss ${a.losses[0].toFixed(3)} -> ${a.losses.at(-1)!.toFixed(3)}`);
  t.ok(
    a.grown < a.baseBytes,
    `no copy of the base for the reference: ${a.grown} bytes more after training, a copy would be ${2 * a.baseBytes} (weights + gradients)`,
  );
  await run('b', false, 3);
  const c = await run('b', true);
  t.ok(
    c.params.every((x, i) => bitwiseEqual(x, a.params[i])),
    '2N straight == N + resume + N, every tensor bitwise',
  );
});

t.test('bad LoRA options are named', async (t) => {
  await t.rejects(Model.create(llama, { lora: { rank: 0 } }), /Model\.create: expected options\.lora\.rank/);
  await t.rejects(
    Model.create(llama, { lora: { rank: 2, modules: ['gate_up_proj'] } }),
    /options\.lora\.modules\[0\].*one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj/,
  );
  await t.rejects(Model.create(llama, { lora: { rank: 2, dropout: 0.1 } as never }), /options\.lora/);
  await t.rejects(
    Model.create(llama, { lora: { rank: 2 }, tensorParallel: 2 }),
    /LoRA with tensorParallel > 1 is not implemented/,
  );
});
