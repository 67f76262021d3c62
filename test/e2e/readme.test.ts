// The README's "Use it from TypeScript" example, as written: it must typecheck against the
// package's published types (import from 'rlhf', resolved through package.json "exports" to dist/)
// and run, printing what the README says it prints.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { packageRoot } from '../../lib/native.js';

const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');
const section = readme.split('\n## Use it from TypeScript')[1] ?? '';
const example = /```ts\n([\s\S]*?)```/.exec(section)?.[1];

t.test('the README example typechecks and runs', { timeout: 120000 }, async (t) => {
  t.ok(example, 'README has a ts block under "Use it from TypeScript"');
  if (!example) return;
  t.match(example, /from 'rlhf'/, 'imports the package by name');
  // Inside the package folder, so that 'rlhf' resolves to this package (self-reference).
  const dir = join(packageRoot, 'build', 'readme-example');
  mkdirSync(dir, { recursive: true });
  const src = join(dir, 'example.mts');
  writeFileSync(src, example);

  const program = ts.createProgram([src], {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    skipLibCheck: true,
    types: ['node'],
  });
  const diagnostics = ts
    .getPreEmitDiagnostics(program)
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  t.same(diagnostics, [], 'no type errors');

  const js = ts.transpileModule(example, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  writeFileSync(join(dir, 'example.mjs'), js);
  const cwd = mkdtempSync(join(tmpdir(), 'rlhf-readme-'));
  t.teardown(() => rmSync(cwd, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [join(dir, 'example.mjs')], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, RLHF_THREADS: '1' },
  });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^SFT: 60 steps, loss \d\.\d{3}$/m);
  const grpo = /^GRPO: reward (\d\.\d\d) -> (\d\.\d\d)$/m.exec(r.stdout);
  t.ok(grpo, 'GRPO line');
  if (grpo) t.ok(Number(grpo[2]) > Number(grpo[1]), `GRPO raises the reward (${grpo[1]} -> ${grpo[2]})`);
  t.match(r.stdout, /^DPO: 4 steps, loss \d\.\d{3}$/m);
  t.match(r.stdout, /^What is 0\+0\? -> .*\nWhat is 1\+7\? -> /m, 'one greedy answer per prompt');
  t.ok(
    existsSync(join(cwd, 'example-model', 'config.json')) &&
      existsSync(join(cwd, 'example-model', 'model.safetensors')),
    'checkpoint written in the HF layout',
  );
});
