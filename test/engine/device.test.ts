// Model devices: 'cpu' by default and kept by clones; `device` validated by name; 'cuda' either
// runs (a CUDA build on a GPU machine: forward matches the CPU model within fp32 tolerance) or is
// refused with ERR_RLHF_UNSUPPORTED giving buildInfo()'s reason. The CUDA backend's end-to-end
// proof without a GPU is native (native/cuda/tests/test_model_backend.cu, npm run test:cuda-host).
import t from 'tap';
import { tinyConfig } from '../../lib/engine/config.js';
import { buildInfo } from '../../lib/engine/device.js';
import { Model } from '../../lib/engine/model.js';
import { RlhfError } from '../../lib/errors.js';

const tiny = () => tinyConfig({ vocab: 61, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 48, maxPositions: 64 });

t.test('device: cpu by default, kept by clone(); bad names refused', async (t) => {
  const m = await Model.create(tiny(), { seed: 1 });
  t.equal(m.device, 'cpu');
  const c = await m.clone();
  t.equal(c.device, 'cpu', 'clone keeps the device');
  await t.rejects(Model.create(tiny(), { device: 'gpu' as 'cpu' }), /options\.device/, 'unknown device named');
  m.dispose();
  c.dispose();
});

t.test('buildInfo: what was compiled and what a Model can run on', async (t) => {
  const info = buildInfo();
  t.ok(info.modelDevices.includes('cpu'));
  if (!info.cudaCompiled) t.notOk(info.modelDevices.includes('cuda'), 'no CUDA backend without a CUDA build');
  if (!info.modelDevices.includes('cuda'))
    t.match(info.cudaBackendUnavailableReason ?? '', /\S/, 'says why cuda is not available');
});

t.test("device 'cuda': runs like the CPU model, or a coded error saying why not", async (t) => {
  const info = buildInfo();
  if (!info.modelDevices.includes('cuda')) {
    const err = await Model.create(tiny(), { seed: 1, device: 'cuda' }).catch((e: unknown) => e);
    t.ok(err instanceof RlhfError, 'an RlhfError');
    t.equal((err as RlhfError).code, 'ERR_RLHF_UNSUPPORTED');
    t.match((err as Error).message, /device 'cuda' is not available: \S/);
    t.ok((err as Error).message.includes(info.cudaBackendUnavailableReason!), "buildInfo()'s reason");
    return;
  }
  const cpu = await Model.create(tiny(), { seed: 1, initStd: 0.3 });
  const gpu = await Model.create(tiny(), { seed: 1, initStd: 0.3, device: 'cuda' });
  t.equal(gpu.device, 'cuda');
  const tokens = Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 7) % 61);
  const targets = Int32Array.from({ length: 2 * 9 }, (_, i) => (i * 5 + 3) % 61);
  const batch = { tokens, targets, batch: 2, seqLen: 9, saveForBackward: false, entropy: true };
  const a = await cpu.forward(batch);
  const b = await gpu.forward(batch);
  for (let i = 0; i < tokens.length; i++) {
    t.ok(Math.abs(a.logprobs[i] - b.logprobs[i]) <= 2e-5 + 2e-4 * Math.abs(a.logprobs[i]), `logprob ${i}`);
  }
  cpu.dispose();
  gpu.dispose();
});
