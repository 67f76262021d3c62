// Run identity: the canonical form of trainer options, the config hash and data fingerprint, and
// the named differences a resume reports.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canonical, manifestDifferences, runIdentity } from '../../lib/train/run-manifest.js';

t.test('canonical: sorted keys, no undefined, named functions and reward sources, long arrays hashed', async (t) => {
  t.same(JSON.stringify(canonical({ b: 1, a: { d: undefined, c: [1, 2] } })), '{"a":{"c":[1,2]},"b":1}');
  t.equal(
    canonical(function shorter() {}),
    '[function shorter]',
  );
  t.same(canonical({ name: 'demo-gold', score: () => [] }), { reward: 'demo-gold' });
  t.same(canonical({ vocabSize: 263, encode: () => [] }), { tokenizer: 'Object', vocabSize: 263 });
  t.same(canonical([NaN, Infinity]), ['NaN', 'Infinity']);
  const long = canonical(Array.from({ length: 40 }, (_, i) => ({ prompt: `p${i}` }))) as {
    items: number;
    sha256: string;
  };
  t.equal(long.items, 40);
  t.match(long.sha256, /^[0-9a-f]{64}$/);
  t.not(
    (canonical(Array.from({ length: 40 }, (_, i) => ({ prompt: `p${i + 1}` }))) as { sha256: string }).sha256,
    long.sha256,
    'one changed record changes the hash',
  );
  const f = canonical(new Float32Array([1, 2])) as Record<string, unknown>;
  t.equal(f.Float32Array, 2);
});

t.test(
  "runIdentity: data options fingerprinted (file bytes or records), left out of the config; the caller's object untouched",
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'rlhf-identity-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'a.jsonl'), '{"prompt":"x"}\n');
    writeFileSync(join(dir, 'b.jsonl'), '{"prompt":"x"}\n');
    const opts = {
      lr: 1e-5,
      prompts: join(dir, 'a.jsonl'),
      ptx: { data: [{ prompt: 'a', completion: 'b' }], coef: 0.5 },
      outputDir: '/x',
      resumeFrom: 'latest',
      saveEvery: 3,
      seed: 4,
    };
    const a = await runIdentity({ config: opts, dataKeys: ['prompts', 'ptx.data'] });
    t.same(a.config, { lr: 1e-5, ptx: { coef: 0.5 }, seed: 4 }, 'data, output and resume settings are not config');
    t.same(Object.keys(a.data).sort(), ['prompts', 'ptx.data']);
    t.match(a.data.prompts, /^file:/);
    t.match(a.data['ptx.data'], /^records:/);
    t.equal(a.seed, 4);
    t.same(opts.ptx.data, [{ prompt: 'a', completion: 'b' }], 'the options object is not modified');
    const moved = await runIdentity({
      config: { ...opts, prompts: join(dir, 'b.jsonl'), outputDir: '/elsewhere' },
      dataKeys: ['prompts', 'ptx.data'],
    });
    t.equal(moved.dataFingerprint, a.dataFingerprint, 'the same bytes under another name: the same fingerprint');
    t.equal(moved.configHash, a.configHash);
    writeFileSync(join(dir, 'b.jsonl'), '{"prompt":"y"}\n');
    const changed = await runIdentity({
      config: { ...opts, prompts: join(dir, 'b.jsonl'), sampling: { temperature: 0.5 } },
      dataKeys: ['prompts', 'ptx.data'],
    });
    t.not(changed.dataFingerprint, a.dataFingerprint);
    const diffs = manifestDifferences({ ...a, stage: 'group' }, { ...changed, stage: 'group' });
    t.equal(diffs.length, 2);
    t.match(diffs[0], /^sampling\.temperature: \(unset\) -> 0\.5$/);
    t.match(diffs[1], /^data prompts changed \("file:/);
    t.same(manifestDifferences({ ...a, stage: 'ppo' }, { ...a, stage: 'group' }), ['stage: ppo -> group']);
    await t.rejects(runIdentity({ config: { train: join(dir, 'missing.jsonl') }, dataKeys: ['train'] }), {
      code: 'ERR_RLHF_IO',
      message: /missing\.jsonl/,
    });
  },
);
