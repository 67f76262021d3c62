// SFT on a tiny byte-level model: the loss falls; packing trains too; the checkpoint and final
// model are Hugging Face directories; 2N steps straight == N steps + resume + N steps, bitwise.
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { ByteTokenizer, loadTokenizer } from '../../lib/tokenizer/index.js';
import { SFTTrainer } from '../../lib/train/sft.js';
import { bitwiseEqual } from '../helpers/tolerance.js';

const tok = new ByteTokenizer();
const config = () =>
  tinyConfig({
    vocab: 264,
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    maxPositions: 128,
    eosTokenId: tok.eosId,
  });

function writeData(dir: string): string {
  const lines: string[] = [];
  for (let a = 0; a < 6; a++)
    for (let b = 0; b < 6; b++) lines.push(JSON.stringify({ prompt: `${a}+${b}=`, completion: `${a + b}` }));
  lines.push(
    JSON.stringify({
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'hello' },
      ],
    }),
  );
  const path = join(dir, 'train.jsonl');
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

t.test('loss falls; events; checkpoint and final model in HF layout', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-sft-'));
  try {
    const model = await Model.create(config(), { seed: 1 });
    const trainer = new SFTTrainer({
      model,
      tokenizer: tok,
      train: writeData(dir),
      eval: writeData(dir),
      outputDir: join(dir, 'out'),
      seqLen: 32,
      batchSize: 8,
      epochs: 12,
      lr: 3e-3,
      warmupSteps: 3,
      saveEvery: 20,
    });
    const losses: number[] = [];
    trainer.on('step', (e) => losses.push(e.metrics.loss));
    const before = (await trainer.evaluate()).loss;
    const r = await trainer.train();
    t.equal(r.steps, 12 * 5, '37 examples / 8 = 5 micro-batches per epoch');
    t.ok(r.evalLoss! < before * 0.6, `eval loss ${before.toFixed(3)} -> ${r.evalLoss!.toFixed(3)}`);
    t.ok(
      losses.slice(-5).reduce((a, b) => a + b) < losses.slice(0, 5).reduce((a, b) => a + b) * 0.6,
      'train loss falls',
    );
    const out = readdirSync(join(dir, 'out')).sort();
    t.same(
      out,
      ['checkpoint-40', 'checkpoint-60', 'metrics.jsonl', 'model', 'run.json'],
      'last two checkpoints kept, metrics, final model',
    );
    t.same(readdirSync(join(dir, 'out', 'checkpoint-60')).sort(), ['checkpoint.json', 'model', 'trainer_state.json']);
    t.same(readdirSync(join(dir, 'out', 'checkpoint-60', 'model')).sort(), [
      'config.json',
      'model.safetensors',
      'optimizer.safetensors',
      'tokenizer_config.json',
    ]);
    const reloaded = await Model.load(join(dir, 'out', 'model'));
    const rt = await loadTokenizer(join(dir, 'out', 'model'));
    t.equal(rt.kind, 'byte');
    t.ok(bitwiseEqual(await reloaded.getParameter('model.norm.weight'), await model.getParameter('model.norm.weight')));
    const lines = readFileSync(join(dir, 'out', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    t.equal(lines.filter((l) => l.loss !== undefined).length, 60, 'one metrics line per step');
    t.ok(
      lines.some((l) => l.evalLoss !== undefined),
      'eval metrics',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('packing: the loss falls too', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-sft-pack-'));
  try {
    const model = await Model.create(config(), { seed: 2 });
    const trainer = new SFTTrainer({
      model,
      tokenizer: tok,
      train: writeData(dir),
      seqLen: 64,
      batchSize: 2,
      epochs: 15,
      lr: 3e-3,
      packing: true,
    });
    const losses: number[] = [];
    trainer.on('step', (e) => losses.push(e.metrics.loss));
    await trainer.train();
    t.ok(losses.at(-1)! < losses[0] * 0.6, `${losses[0].toFixed(3)} -> ${losses.at(-1)!.toFixed(3)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('exact resume: 2N straight == N + resume + N (bitwise)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-sft-resume-'));
  try {
    const data = writeData(dir);
    const common = {
      tokenizer: tok,
      train: data,
      seqLen: 32,
      batchSize: 5,
      gradAccum: 2,
      lr: 2e-3,
      warmupSteps: 2,
      weightDecay: 0.01,
      maxSteps: 8,
      seed: 7,
    };
    const a = await Model.create(config(), { seed: 3 });
    await new SFTTrainer({ ...common, model: a, outputDir: join(dir, 'a') }).train();
    const b = await Model.create(config(), { seed: 3 });
    const interrupted = new SFTTrainer({ ...common, model: b, outputDir: join(dir, 'b') });
    interrupted.on('step', (e) => e.step === 4 && interrupted.requestStop()); // a crash after step 4
    t.equal((await interrupted.train()).stopped, true);
    const c = await Model.create(config(), { seed: 99 }); // different init: everything must come from the checkpoint
    await new SFTTrainer({ ...common, model: c, outputDir: join(dir, 'b'), resumeFrom: 'latest' }).train();
    for (const p of a.parameters())
      if (!bitwiseEqual(await a.getParameter(p.name), await c.getParameter(p.name))) t.fail(`${p.name} differs`);
    t.pass('every parameter identical');
    const la = readFileSync(join(dir, 'a', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).loss);
    const lb = readFileSync(join(dir, 'b', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).loss);
    t.same(lb, la, 'the resumed metrics log equals the straight one');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('bad data: file and line named', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-sft-bad-'));
  try {
    writeFileSync(join(dir, 'bad.jsonl'), '{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": 5}\n');
    const model = await Model.create(config(), { seed: 1 });
    await t.rejects(new SFTTrainer({ model, tokenizer: tok, train: join(dir, 'bad.jsonl') }).train(), {
      code: 'ERR_RLHF_FORMAT',
      message: /bad\.jsonl:2: expected "completion" to be a string/,
    });
    t.throws(() => new SFTTrainer({ model, tokenizer: tok, train: 'x', lr: -1 }), {
      name: 'RangeError',
      message: /options\.lr/,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

t.test('in-memory records: the JSONL shapes are accepted and checked like file lines', async (t) => {
  const model = await Model.create(config(), { seed: 3 });
  const records = [
    { prompt: '1+1=', completion: '2' },
    {
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'hello' },
      ],
    },
  ];
  const r = await new SFTTrainer({
    model,
    tokenizer: tok,
    train: records,
    seqLen: 32,
    batchSize: 2,
    epochs: 1,
  }).train();
  t.equal(r.steps, 1);
  const bad = [{ prompt: '1+1=', completion: '2' }, { prompt: 'x' }] as unknown as typeof records;
  await t.rejects(
    new SFTTrainer({ model, tokenizer: tok, train: bad, seqLen: 32 }).train(),
    /SFTTrainer: options\.train\[1\]: .*completion/,
  );
  model.dispose();
});
