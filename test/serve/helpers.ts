// A tiny random byte-level model saved to a temp folder, for serving tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyConfig } from '../../lib/engine/config.js';
import { Model } from '../../lib/engine/model.js';
import { ByteTokenizer } from '../../lib/tokenizer/index.js';

/** Creates and saves a tiny model; `withTokenizer` false leaves out the tokenizer files. */
export async function tinyCheckpoint(
  opts: { seed?: number; withTokenizer?: boolean; maxPositions?: number } = {},
): Promise<{ dir: string; model: Model; tokenizer: ByteTokenizer; cleanup: () => void }> {
  const tokenizer = new ByteTokenizer();
  const config = tinyConfig({
    vocab: 264,
    hidden: 32,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    ffn: 64,
    maxPositions: opts.maxPositions ?? 256,
    eosTokenId: tokenizer.stopIds,
  });
  const model = await Model.create(config, { seed: opts.seed ?? 3, initStd: 0.3 });
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-serve-'));
  await model.save(join(dir, 'tiny'), opts.withTokenizer === false ? {} : { extraFiles: (d) => tokenizer.save(d) });
  return { dir: join(dir, 'tiny'), model, tokenizer, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Starts `rlhf serve` (the compiled CLI) with `args` and waits for its "listening on" line. */
export async function spawnServe(args: string[]): Promise<{
  url: string;
  proc: import('node:child_process').ChildProcess;
  output: () => string;
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}> {
  const { spawn } = await import('node:child_process');
  const { packageRoot } = await import('../../lib/native.js');
  const proc = spawn(
    process.execPath,
    [join(packageRoot, 'dist', 'cli', 'main.js'), 'serve', '--port', '0', '--threads', '1', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d));
  proc.stderr!.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rlhf serve did not start: ${out}`)), 60000);
    proc.stdout!.on('data', () => {
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    void exited.then((code) => reject(new Error(`rlhf serve exited with ${code}: ${out}`)));
  });
  return {
    url,
    proc,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** The error a promise rejects with (a resolved promise gives an Error saying so, which no status matches). */
export async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => new Error('expected a rejection'),
    (err: unknown) => err,
  );
}
