// Model.save writes the model's tokenizer, so every saved folder loads in every command: an explicit
// tokenizer, model.tokenizer (kept by clones), the tokenizer files of the folder the model was
// loaded from, or — for a model with the byte tokenizer's vocabulary — the byte tokenizer. A model
// saved as in the README loads in `rlhf generate`.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Model } from '../../lib/engine/model.js';
import { tinyConfig } from '../../lib/engine/config.js';
import { packageRoot } from '../../lib/native.js';
import { ByteTokenizer, loadTokenizer } from '../../lib/tokenizer/index.js';

const dir = mkdtempSync(join(tmpdir(), 'rlhf-save-tok-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const small = (vocab: number) => tinyConfig({ vocab, hidden: 16, layers: 1, heads: 2, kvHeads: 1, ffn: 24 });

t.test(
  'the byte tokenizer is written for a model with its vocabulary, and rlhf generate loads the folder',
  async (t) => {
    const tok = new ByteTokenizer();
    const m = await Model.create(small(tok.vocabSize), { seed: 0 });
    await m.save(join(dir, 'byte')); // as in the README: no tokenizer passed
    const loaded = await loadTokenizer(join(dir, 'byte'));
    t.ok(loaded instanceof ByteTokenizer);
    t.same(loaded.encode('2+3'), tok.encode('2+3'));
    m.dispose();
    const r = spawnSync(
      process.execPath,
      [
        join(packageRoot, 'dist', 'cli', 'main.js'),
        'generate',
        '--model',
        join(dir, 'byte'),
        '--prompt',
        'What is 2+3?',
        '--max-new-tokens',
        '3',
        '--threads',
        '1',
      ],
      { encoding: 'utf8' },
    );
    t.equal(r.status, 0, r.stderr);
  },
);

t.test(
  "another vocabulary: no guess; an explicit or attached tokenizer is written; a loaded folder's files are copied",
  async (t) => {
    const m = await Model.create(small(300), { seed: 0 });
    await m.save(join(dir, 'none'));
    t.notOk(existsSync(join(dir, 'none', 'tokenizer_config.json')), 'no tokenizer made up for an unknown vocabulary');
    await t.rejects(loadTokenizer(join(dir, 'none')), /cannot read .*tokenizer\.json/);
    const saved: string[] = [];
    const fake = { save: async (d: string) => void saved.push(d) };
    await m.save(join(dir, 'explicit'), { tokenizer: fake });
    t.equal(saved.length, 1, 'opts.tokenizer saved');
    m.tokenizer = fake;
    const c = await m.clone();
    await c.save(join(dir, 'attached'));
    t.equal(saved.length, 2, 'model.tokenizer, kept by clone()');
    m.dispose();
    c.dispose();

    // a folder with tokenizer files (contents opaque to the copy) → Model.load → save elsewhere
    const src = join(dir, 'none');
    writeFileSync(join(src, 'tokenizer.json'), '{"model": {"type": "BPE"}, "marker": 42}\n');
    writeFileSync(join(src, 'chat_template.jinja'), '{{ messages }}');
    const l = await Model.load(src);
    await l.save(join(dir, 'copied'));
    for (const f of ['tokenizer.json', 'chat_template.jinja'])
      t.equal(
        readFileSync(join(dir, 'copied', f), 'utf8'),
        readFileSync(join(src, f), 'utf8'),
        `${f} copied from the folder it was loaded from`,
      );
    t.notOk(existsSync(join(dir, 'copied', 'tokenizer_config.json')), 'only files that exist');
    l.dispose();
  },
);
