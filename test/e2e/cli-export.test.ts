// `rlhf export --gguf`: a saved model (byte tokenizer) becomes a GGUF file that parses back with
// the model's weights; bad flags and unsupported models fail with one line and write nothing.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyConfig } from '../../lib/engine/config.js';
import { dequantizeQ8_0, ggufTensorF32, quantizeQ8_0, readGguf } from '../../lib/io/gguf.js';
import { Model } from '../../lib/engine/model.js';
import { packageRoot } from '../../lib/native.js';
import { ByteTokenizer } from '../../lib/tokenizer/byte.js';

const cli = join(packageRoot, 'dist', 'cli', 'main.js');
const rlhf = (...args: string[]) => spawnSync(process.execPath, [cli, ...args, '--threads', '1'], { encoding: 'utf8' });
const dir = mkdtempSync(join(tmpdir(), 'rlhf-export-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('rlhf export --gguf', async (t) => {
  const m = await Model.create(tinyConfig({ vocab: 263, hidden: 64, layers: 1, heads: 4, ffn: 64, eosTokenId: 262 }), {
    seed: 4,
  });
  const modelDir = join(dir, 'model');
  await m.save(modelDir, { extraFiles: (d) => new ByteTokenizer().save(d) });
  const out = join(dir, 'out', 'm.gguf');
  let r = rlhf('export', '--model', modelDir, '--gguf', join(dir, 'm.gguf'), '--dtype', 'q8_0', '--name', 'tiny');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /m\.gguf written \(q8_0\)/);
  const g = await readGguf(join(dir, 'm.gguf'));
  t.equal(g.metadata.get('general.name')?.value, 'tiny');
  const w = await m.getParameter('model.layers.0.mlp.down_proj.weight');
  t.same(
    ggufTensorF32(g, 'blk.0.ffn_down.weight'),
    dequantizeQ8_0(quantizeQ8_0(w), w.length),
    'the weights, quantized',
  );
  t.same(
    readdirSync(dir).filter((f) => f.includes('.tmp-')),
    [],
    'no temporary file left',
  );

  r = rlhf('export', '--model', modelDir, '--gguf', out, '--dtype', 'q4');
  t.not(r.status, 0);
  t.match(r.stderr, /dtype/);
  r = rlhf('export', '--model', join(packageRoot, 'test/fixtures/models/glm-tiny'), '--gguf', join(dir, 'glm.gguf'));
  t.not(r.status, 0);
  t.match(r.stderr, /GLM-4/);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.notOk(existsSync(join(dir, 'glm.gguf')), 'nothing written');
  r = rlhf('export', '--model', modelDir);
  t.not(r.status, 0);
  t.match(r.stderr, /--gguf/);
  r = rlhf('export', '--help');
  t.equal(r.status, 0);
  t.match(r.stdout, /usage: rlhf export/);
  m.dispose();
});
