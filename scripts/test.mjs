#!/usr/bin/env node
// `npm test`: every test, then one plain summary line "N passed, N failed".
//   1. typecheck lib/, test/ and bench/ (tsc), and compile lib/ to dist/ (the CLI tests run dist/);
//   2. native unit tests: configure + build native/tests with CMake (CPU) into build-native/, run ctest;
//   3. the CUDA kernels under the host emulation harness (npm run test:cuda-host, same build dir);
//   4. the TypeScript suite with tap (test/**/*.test.ts), one line per file as it completes (failures
//      with their diagnostics), raw TAP saved to build-native/tap.log.
// Flags: --native-only, --tap-only, and any further arguments go to tap (e.g. a test file).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCudaHostTests } from './test-cuda-host.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const nativeOnly = args.includes('--native-only');
const tapOnly = args.includes('--tap-only');
const tapArgs = args.filter((a) => !a.startsWith('--native-only') && !a.startsWith('--tap-only'));
const buildDir = join(root, 'build-native');
mkdirSync(buildDir, { recursive: true });

let passed = 0,
  failed = 0,
  skipped = 0;
const bin = (name) => join(root, 'node_modules', '.bin', name);

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, {
    cwd: root,
    encoding: 'utf8',
    stdio: opts.capture ? 'pipe' : 'inherit',
    env: { ...process.env, ...opts.env },
    maxBuffer: 1 << 28,
  });
  if (r.error) throw r.error;
  return r;
}

function step(label, cmd, argv) {
  process.stdout.write(`\n== ${label}\n`);
  const r = run(cmd, argv);
  if (r.status === 0) passed += 1;
  else {
    failed += 1;
    process.stdout.write(`FAILED: ${label}\n`);
  }
  return r.status === 0;
}

// 1. types and dist/
if (!nativeOnly) {
  step('typecheck (tsc -p tsconfig.check.json)', bin('tsc'), ['-p', 'tsconfig.check.json']);
  step('compile lib/ to dist/ (scripts/build-ts.mjs)', process.execPath, [join(root, 'scripts', 'build-ts.mjs')]);
}

// 2. native tests
if (!tapOnly) {
  process.stdout.write('\n== native unit tests (cmake + ctest)\n');
  const configured =
    run('cmake', ['-S', root, '-B', buildDir, '-DRLHF_CUDA=OFF', '-DCMAKE_BUILD_TYPE=Release'], { capture: true })
      .status === 0 && run('cmake', ['--build', buildDir, '--parallel', '2'], { capture: true }).status === 0;
  if (!configured) {
    const again = run('cmake', ['--build', buildDir], { capture: true });
    process.stdout.write(again.stdout + again.stderr);
    failed += 1;
    process.stdout.write('FAILED: native build\n');
  } else {
    const r = run('ctest', ['--test-dir', buildDir, '--output-on-failure', '-V'], { capture: true });
    for (const m of (r.stdout ?? '').matchAll(/: (\d+) passed, (\d+) failed, (\d+) skipped/g)) {
      ((passed += Number(m[1])), (failed += Number(m[2])), (skipped += Number(m[3])));
    }
    for (const line of (r.stdout ?? '').split('\n')) {
      if (/: (FAIL|SKIP) |Test +#\d+:|tests passed|tests failed/.test(line))
        process.stdout.write(line.replace(/^\d+: /, '') + '\n');
      else if (/^\d+:   /.test(line)) process.stdout.write(line.replace(/^\d+: /, '') + '\n');
    }
    if (r.status !== 0 && !/: (\d+) passed/.test(r.stdout ?? '')) failed += 1;
  }
}

// 3. CUDA kernels under host emulation (built by step 2's cmake --build: no configure needed)
if (!tapOnly) {
  process.stdout.write('\n== CUDA kernels under host emulation (npm run test:cuda-host)\n');
  const r = runCudaHostTests({ configure: false });
  ((passed += r.passed), (failed += r.failed), (skipped += r.skipped));
}

// 4. tap
if (!nativeOnly) {
  process.stdout.write('\n== TypeScript tests (tap)\n');
  // tap runs two files at once on this 2-core class of machine; one engine thread per process
  // avoids oversubscription (tests that exercise threading call setThreads themselves).
  // streamed: each file's ok/not-ok line appears as tap finishes it (failures with their diagnostics)
  const r = await new Promise((resolve, reject) => {
    const child = spawn(bin('tap'), ['-R', 'tap', ...tapArgs], {
      cwd: root,
      env: { ...process.env, RLHF_THREADS: process.env.RLHF_THREADS ?? '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '',
      pending = '',
      context = 0;
    const onLine = (l) => {
      if (context > 0) {
        if (/^\s+(ok|not ok) /.test(l)) context = 0;
        else return void (context--, process.stdout.write(l + '\n'));
      }
      if (/^(ok|not ok) \d+ - /.test(l)) process.stdout.write(l + '\n');
      else if (/^\s+not ok /.test(l)) (process.stdout.write(l + '\n'), (context = 29));
      else if (/^\s*# Subtest: .*# SKIP|# SKIP/.test(l) && /ok .*# SKIP/.test(l)) process.stdout.write(l + '\n');
    };
    const take = (chunk) => {
      out += chunk;
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop();
      lines.forEach(onLine);
    };
    child.stdout.setEncoding('utf8').on('data', take);
    child.stderr.setEncoding('utf8').on('data', take);
    child.on('error', reject);
    child.on('close', (status) => {
      if (pending) onLine(pending);
      resolve({ status, out });
    });
  });
  const out = r.out;
  writeFileSync(join(buildDir, 'tap.log'), out);
  const summary = out.match(/# \{ total: (\d+), pass: (\d+)(?:, fail: (\d+))?(?:, skip: (\d+))?/);
  if (summary) {
    passed += Number(summary[2]);
    failed += Number(summary[3] ?? 0);
    skipped += Number(summary[4] ?? 0);
  } else {
    failed += 1;
    process.stdout.write('FAILED: tap printed no summary (crash?); raw output in build-native/tap.log\n');
  }
  if (r.status !== 0 && !(summary && Number(summary[3] ?? 0) > 0)) {
    failed += 1;
    process.stdout.write(`FAILED: tap exited with status ${r.status}\n`);
  }
}

process.stdout.write(`\n${skipped} skipped (see SKIP lines above for reasons)\n`);
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exitCode = failed === 0 ? 0 : 1;
