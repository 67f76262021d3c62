// Process reward models (docs/algorithms.md §4 PRM) on a synthetic process: a response is 3–6 steps "v=NN";
// a step is good while every step so far ends in an even digit (the first odd one and all after it
// are bad: the label needs the earlier steps, not only the step itself). ProcessRewardTrainer learns
// it (held-out step and response accuracy well above the majority rate); ProcessRewardModel scores
// responses with min/last/mean; step records and encodeSteps; 2N == N + resume + N bitwise; errors.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setThreads } from '../../lib/engine/device.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { encodeSteps, loadStepData, splitSteps, type StepRecord } from '../../lib/data/index.js';
import { ProcessRewardModel } from '../../lib/rewards/process-reward-model.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';
import { ProcessRewardTrainer } from '../../lib/train/process-reward.js';
import { bitwiseEqual } from '../helpers/tolerance.js';
import { Rng } from '../helpers/random.js';

const tok = new ByteTokenizer();
setThreads(1); // tap runs two files at once on two cores
const prmConfig = () =>
  tinyConfig({
    vocab: 264,
    hidden: 48,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 96,
    maxPositions: 128,
    eosTokenId: tok.eosId,
    valueHead: true,
  });

/** Records of 3–6 steps "v=NN"; labels 1 until the first step ending in an odd digit, 0 from it on. */
function chains(n: number, seed: number): StepRecord[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, r) => {
    const steps = Array.from({ length: rng.int(3, 6) }, () => `v=${rng.int(0, 9)}${rng.int(0, 9)}`);
    let good = true;
    const labels = steps.map((s) => Number((good &&= Number(s.at(-1)) % 2 === 0)));
    return { prompt: `chain ${r % 7}:`, steps, labels };
  });
}

t.test("encodeSteps: the score position is each step's separator; steps past maxLength dropped", async (t) => {
  const e = encodeSteps(tok, 'p:', ['ab', 'c', 'de'], '\n');
  const all = [...e.promptIds, ...e.responseIds];
  t.same(
    e.stepEnds.map((i) => all[i]),
    [10, 10, 10],
    'every step ends on "\\n"',
  );
  t.equal(tok.decode(Int32Array.from(all.slice(e.promptIds.length))), 'ab\nc\nde\n');
  const cut = encodeSteps(tok, 'p:', ['ab', 'c', 'de'], '\n', e.promptIds.length + 5);
  t.same(cut.stepEnds, e.stepEnds.slice(0, 2));
  t.equal(cut.droppedSteps, 1);
  t.same(splitSteps('a\n\nb\n', '\n'), ['a', 'b']);
});

t.test('learns the process: held-out step and response accuracy well above the majority rate', async (t) => {
  const data = chains(480, 1);
  const model = await Model.create(prmConfig(), { seed: 2 });
  const trainer = new ProcessRewardTrainer({
    model,
    tokenizer: tok,
    train: data,
    evalSplit: 0.2,
    batchSize: 16,
    epochs: 6,
    lr: 3e-3,
    warmupSteps: 10,
    seqLen: 64,
    seed: 3,
  });
  const before = await trainer.evaluate();
  const r = await trainer.train();
  const labels = data.flatMap((d) => d.labels);
  const majority = Math.max(...[0, 1].map((v) => labels.filter((l) => l === v).length / labels.length));
  t.ok(
    r.eval!.stepAccuracy > 0.95,
    `step accuracy ${before.stepAccuracy.toFixed(3)} -> ${r.eval!.stepAccuracy.toFixed(3)} (majority ${majority.toFixed(3)})`,
  );
  t.ok(
    r.eval!.responseAccuracy > 0.95,
    `response accuracy (min over steps) ${before.responseAccuracy.toFixed(3)} -> ${r.eval!.responseAccuracy.toFixed(3)}`,
  );
  t.equal(r.eval!.responses, 96);

  // the trained model as a reward source
  const prm = new ProcessRewardModel(model, tok);
  const good = { prompt: 'chain 1:', response: 'v=12\nv=34\nv=56' },
    bad = { prompt: 'chain 1:', response: 'v=12\nv=33\nv=56' };
  const req = (x: typeof good) => ({ ...x, promptIds: new Int32Array(0), responseIds: new Int32Array(0) });
  const [pg, pb] = await prm.stepProbabilities(
    [good, bad].map((x) => ({ prompt: x.prompt, steps: splitSteps(x.response, '\n') })),
  );
  t.ok(
    pg.every((p) => p > 0.5),
    `good chain: every step > 0.5 (${pg.map((p) => p.toFixed(2))})`,
  );
  t.ok(pb[0] > 0.5 && pb[1] < 0.5 && pb[2] < 0.5, `bad from step 2 on (${pb.map((p) => p.toFixed(2))})`);
  const [sg, sb, empty] = await prm.score([req(good), req(bad), req({ prompt: 'chain 1:', response: '\n' })]);
  t.equal(sg, Math.min(...pg), 'min aggregation');
  t.ok(sg > 0.5 && sb < 0.5);
  t.equal(empty, 0, 'a response with no step scores 0');
  t.equal((await new ProcessRewardModel(model, tok, { aggregate: 'last' }).score([req(bad)]))[0], pb[2]);
  t.ok(
    Math.abs(
      (await new ProcessRewardModel(model, tok, { aggregate: 'mean' }).score([req(bad)]))[0] -
        (pb[0] + pb[1] + pb[2]) / 3,
    ) < 1e-12,
  );
  model.dispose();
});

t.test('exact resume: 2N straight == N + resume + N (bitwise); JSONL data', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-prm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'steps.jsonl');
  writeFileSync(
    path,
    chains(40, 5)
      .map((r) => JSON.stringify(r))
      .join('\n') + '\n',
  );
  const common = {
    tokenizer: tok,
    train: path,
    evalSplit: 0.2,
    seqLen: 64,
    batchSize: 4,
    gradAccum: 2,
    lr: 2e-3,
    maxSteps: 6,
    seed: 4,
  };
  const a = await Model.create(prmConfig(), { seed: 6 });
  const ra = await new ProcessRewardTrainer({ ...common, model: a, outputDir: join(dir, 'a') }).train();
  const b = await Model.create(prmConfig(), { seed: 6 });
  const interrupted = new ProcessRewardTrainer({ ...common, model: b, outputDir: join(dir, 'b') });
  interrupted.on('step', (e) => e.step === 3 && interrupted.requestStop());
  t.equal((await interrupted.train()).stopped, true);
  const c = await Model.create(prmConfig(), { seed: 99 });
  const rc = await new ProcessRewardTrainer({
    ...common,
    model: c,
    outputDir: join(dir, 'b'),
    resumeFrom: 'latest',
  }).train();
  for (const p of a.parameters())
    if (!bitwiseEqual(await a.getParameter(p.name), await c.getParameter(p.name))) t.fail(`${p.name} differs`);
  t.pass('every parameter identical');
  t.equal(rc.eval!.stepAccuracy, ra.eval!.stepAccuracy);
  const losses = (d: string) =>
    readFileSync(join(dir, d, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).loss);
  t.same(losses('b'), losses('a'), 'the resumed metrics log equals the straight one');
  t.equal((await Model.load(join(dir, 'a', 'model'))).config.architecture, 'LlamaForSequenceClassification');
  for (const m of [a, b, c]) m.dispose();
});

t.test('errors: bad records name file and line; a causal LM; bad options', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-prm-bad-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'bad.jsonl');
  writeFileSync(
    path,
    '{"prompt":"q","steps":["a","b"],"labels":[1,0]}\n{"prompt":"q","steps":["a","b"],"labels":[1]}\n',
  );
  await t.rejects(loadStepData('f', 'train', path), {
    code: 'ERR_RLHF_FORMAT',
    message: /bad\.jsonl:2: expected "labels" to be an array of 2 labels/,
  });
  await t.rejects(loadStepData('f', 'train', [{ prompt: 'q', steps: ['a'], labels: [1.5] }]), {
    message: /options\.train\[0\]: expected labels\[0\]/,
  });
  await t.rejects(loadStepData('f', 'train', [{ prompt: 'q', steps: [], labels: [] }]), {
    message: /"steps" to be a non-empty array/,
  });
  const lm = await Model.create(
    tinyConfig({ vocab: 264, hidden: 32, layers: 1, heads: 4, ffn: 64, eosTokenId: tok.eosId }),
    { seed: 1 },
  );
  t.throws(() => new ProcessRewardTrainer({ model: lm, tokenizer: tok, train: [] }), {
    name: 'TypeError',
    message: /scalar head/,
  });
  t.throws(() => new ProcessRewardModel(lm, tok), { message: /scalar head/ });
  const rm = await Model.create(prmConfig(), { seed: 1 });
  t.throws(() => new ProcessRewardTrainer({ model: rm, tokenizer: tok, train: [], seperator: '\n' } as never), {
    message: /did you mean options\.separator/,
  });
  t.throws(() => new ProcessRewardTrainer({ model: rm, tokenizer: tok, train: [], separator: '' }), {
    message: /separator/,
  });
  t.throws(() => new ProcessRewardModel(rm, tok, { aggregate: 'max' as never }), { message: /options\.aggregate/ });
  await t.rejects(
    new ProcessRewardTrainer({
      model: rm,
      tokenizer: tok,
      train: [{ prompt: 'x'.repeat(40), steps: ['a'], labels: [1] }],
      seqLen: 8,
    }).train(),
    { code: 'ERR_RLHF_FORMAT', message: /no train record has a step within seqLen 8/ },
  );
});
