// The native model against the PyTorch reference (test/fixtures/models, made by
// make_model_fixtures.py from a re-implementation of transformers' Llama/Qwen2/GLM code):
// log-probs, entropy, values, the gradient of every parameter, greedy continuations, and a BF16
// checkpoint converted on load. Tolerances: fp32 engine vs float64 reference.
import t from 'tap';
import { join } from 'node:path';
import { Model } from '../../lib/engine/model.js';
import { packageRoot } from '../../lib/native.js';
import { readSafetensorsHeader, readTensorF32 } from '../../lib/io/safetensors.js';
import { assertClose } from '../helpers/tolerance.js';

const fixtures = join(packageRoot, 'test', 'fixtures', 'models');

async function expected(dir: string, file = 'expected.safetensors'): Promise<Map<string, Float32Array>> {
  const h = await readSafetensorsHeader(join(fixtures, dir, file));
  const out = new Map<string, Float32Array>();
  for (const [name, info] of h.tensors) {
    if (info.dtype === 'I32') {
      const { open } = await import('node:fs/promises');
      const fd = await open(h.path, 'r');
      const buf = Buffer.alloc(info.byteLength);
      await fd.read(buf, 0, info.byteLength, info.byteOffset);
      await fd.close();
      out.set(name, Float32Array.from(new Int32Array(buf.buffer, buf.byteOffset, info.byteLength / 4)));
    } else out.set(name, await readTensorF32(h, name));
  }
  return out;
}

/** Scale-aware tolerance: atol relative to the tensor's largest magnitude. */
function tol(ref: Float32Array, rel = 1e-4) {
  let m = 0;
  for (const x of ref) m = Math.max(m, Math.abs(x));
  return { atol: rel * Math.max(m, 1e-6), rtol: 1e-4 };
}

for (const name of ['llama-tiny', 'qwen2-tiny', 'glm-tiny', 'qwen2-tiny-rm', 'llama-tiny-bf16']) {
  t.test(name, async (t) => {
    const m = await Model.load(join(fixtures, name));
    const e = await expected(name);
    const B = 2,
      T = 12;
    const tokens = Int32Array.from(e.get('tokens')!);
    const lengths = Int32Array.from(e.get('lengths')!);
    const isRm = m.config.valueHead;
    const r = await m.forward(
      isRm
        ? { tokens, batch: B, seqLen: T, lengths }
        : { tokens, targets: Int32Array.from(e.get('targets')!), batch: B, seqLen: T, lengths, entropy: true },
    );
    if (isRm) {
      assertClose(t, r.values!, e.get('values')!, tol(e.get('values')!), 'values');
      await m.backward({ dValues: e.get('w_val')! });
    } else {
      assertClose(t, r.logprobs, e.get('logprobs')!, tol(e.get('logprobs')!), 'logprobs');
      assertClose(t, r.entropy!, e.get('entropy')!, tol(e.get('entropy')!), 'entropy');
      await m.backward({ dLogprobs: e.get('w_lp')!, dEntropy: e.get('w_ent')! });
    }
    let checked = 0;
    for (const p of m.parameters()) {
      const ref = e.get(`grad.${p.name}`);
      if (!ref) {
        t.fail(`fixture has no gradient for ${p.name}`);
        continue;
      }
      if (!assertClose(t, await m.getGradient(p.name), ref, tol(ref, 2e-4), `grad ${p.name}`)) break;
      checked++;
    }
    t.equal(checked, m.parameters().length, 'every parameter kind has its gradient checked');
    if (!isRm) {
      const g = await expected(name, 'expected_greedy.safetensors');
      const [seq] = await m.generate({
        prompts: [Int32Array.from(g.get('prompt')!)],
        maxNewTokens: 8,
        temperature: 0,
        stopTokens: [],
      });
      t.same(Array.from(seq.tokens), Array.from(g.get('tokens')!), 'greedy continuation equals the reference');
    }
    m.dispose();
  });
}
