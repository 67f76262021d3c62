#!/usr/bin/env node
// `npm run build:cmake`: the CMake build through cmake-js into build-cmake/ — the addon
// (build-cmake/Release/rlhf.node, with the CUDA backend when nvcc is found) and the native tests.
// lib/native.ts prefers this addon over node-gyp's when it exists. Extra arguments go to cmake-js
// (e.g. --CDRLHF_CUDA=OFF, --CDCMAKE_CUDA_ARCHITECTURES=90).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const r = spawnSync(
  join(root, 'node_modules', '.bin', 'cmake-js'),
  ['compile', '--out', 'build-cmake', '--parallel', '2', ...process.argv.slice(2)],
  {
    cwd: root,
    stdio: 'inherit',
  },
);
process.exitCode = r.status ?? 1;
