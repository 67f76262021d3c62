// A tiny random byte-level model saved to a temp folder, for serving tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';

/** Creates and saves a tiny model; `withTokenizer` false leaves out the tokenizer files. */
export async function tinyCheckpoint(opts: { seed?: number; withTokenizer?: boolean; maxPositions?: number } = {}): Promise<{ dir: string; model: Model; tokenizer: ByteTokenizer; cleanup: () => void }> {
  const tokenizer = new ByteTokenizer();
  const config = tinyConfig({ vocab: 264, hidden: 32, layers: 2, heads: 4, kvHeads: 2, ffn: 64, maxPositions: opts.maxPositions ?? 256, eosTokenId: tokenizer.stopIds });
  const model = await Model.create(config, { seed: opts.seed ?? 3, initStd: 0.3 });
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-serve-'));
  await model.save(join(dir, 'tiny'), opts.withTokenizer === false ? {} : { extraFiles: (d) => tokenizer.save(d) });
  return { dir: join(dir, 'tiny'), model, tokenizer, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
