// A training process for test/train/kill-resume.test.ts, run from dist/ (build it first):
//   node test/helpers/kill-child.mjs '<json>'
//   {trainer: 'sft' | 'dpo', out, dump, resume?: boolean, killAtStep?: n, killInSave?: n}
// killAtStep: SIGKILL itself at the first step event >= n; killInSave: SIGKILL itself inside the
// n-th tokenizer save of this process (every checkpoint write and the final model write makes one),
// i.e. half-way through writing that directory. On success, every parameter (F32, in
// model.parameters() order) is written to `dump`.
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { ByteTokenizer, Model, PreferenceTrainer, SFTTrainer, setThreads, tinyConfig } from '../../dist/index.js';

const a = JSON.parse(process.argv[2]);
setThreads(1);

let saves = 0;
class Tokenizer extends ByteTokenizer {
  async save(dir) {
    if (++saves === a.killInSave) process.kill(process.pid, 'SIGKILL');
    return super.save(dir);
  }
}
const tok = new Tokenizer();
const cfg = tinyConfig({
  vocab: tok.vocabSize,
  hidden: 32,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  ffn: 64,
  maxPositions: 64,
  eosTokenId: tok.eosId,
  padTokenId: tok.padId,
});
// resuming from a checkpoint, the model starts from another init: everything must come from the checkpoint
// (a run resumed before its first checkpoint starts over from the given model, as a new run would)
const fromCheckpoint = a.resume && existsSync(a.out) && readdirSync(a.out).some((n) => /^checkpoint-\d+$/.test(n));
const model = await Model.create(cfg, { seed: fromCheckpoint ? 99 : 3 });
const run = { outputDir: a.out, saveEvery: 3, seed: 7, ...(a.resume ? { resumeFrom: 'latest' } : {}) };
const trainer =
  a.trainer === 'sft'
    ? new SFTTrainer({
        ...run,
        model,
        tokenizer: tok,
        train: Array.from({ length: 24 }, (_, i) => ({
          prompt: `q${i % 6}:`,
          completion: ` ${'ab'.repeat(1 + (i % 4))}`,
        })),
        seqLen: 24,
        batchSize: 4,
        gradAccum: 1,
        maxSteps: 9,
        lr: 3e-3,
        warmupSteps: 2,
      })
    : new PreferenceTrainer({
        ...run,
        policy: model,
        tokenizer: tok,
        loss: 'dpo',
        beta: 0.5,
        train: Array.from({ length: 12 }, (_, i) => ({ prompt: `p${i % 4}:`, chosen: 'aaa', rejected: `b${i % 3}c` })),
        seqLen: 16,
        batchSize: 4,
        epochs: 3,
        lr: 1e-2,
      });
trainer.on('step', (e) => {
  if (a.killAtStep !== undefined && e.step >= a.killAtStep) process.kill(process.pid, 'SIGKILL');
});
await trainer.train();
const parts = [];
for (const p of model.parameters()) parts.push(Buffer.from((await model.getParameter(p.name)).buffer));
writeFileSync(a.dump, Buffer.concat(parts));
