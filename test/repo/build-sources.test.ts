// One source list for both builds: binding.gyp's expansion and CMake's configure both resolve to
// native/sources.json, and every native source on disk is listed there.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { packageRoot } from '../../lib/native.js';

const sources = JSON.parse(readFileSync(join(packageRoot, 'native', 'sources.json'), 'utf8'));
const addonCpu: string[] = [...sources.core, ...sources.cpu, ...sources.model, ...sources.napi, ...sources.cpuOnly];

function listDisk(dir: string, exts: string[]): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(packageRoot, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listDisk(p, exts));
    else if (exts.some((x) => e.name.endsWith(x))) out.push(p);
  }
  return out;
}

t.test('every native source on disk is in sources.json, and nothing else', async (t) => {
  const listed = new Set([...addonCpu, ...sources.cuda, ...sources.tests, ...sources.cudaTests, ...sources.cudaBench]);
  const onDisk = new Set(listDisk('native', ['.cc', '.cu']).map((p) => relative('.', p)));
  t.same([...onDisk].filter((p) => !listed.has(p)).sort(), [], 'no source on disk is missing from sources.json');
  t.same([...listed].filter((p) => !onDisk.has(p)).sort(), [], 'no listed source is missing on disk');
});

t.test('binding.gyp expands to the CPU addon list', async (t) => {
  const gyp = readFileSync(join(packageRoot, 'binding.gyp'), 'utf8');
  t.match(gyp, /<!@\(node scripts\/sources\.cjs addon-cpu\)/);
  const out = execFileSync('node', ['scripts/sources.cjs', 'addon-cpu'], { cwd: packageRoot, encoding: 'utf8' });
  t.same(out.split(' '), addonCpu);
});

t.test('CMake resolves the same CPU addon list', { timeout: 120000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-cmake-'));
  try {
    const out = execFileSync(
      'cmake',
      ['-S', packageRoot, '-B', dir, '-DRLHF_PRINT_SOURCES=ON', '-DRLHF_CUDA=OFF', '-DRLHF_TESTS=OFF'],
      { encoding: 'utf8' },
    );
    const line = out.split('\n').find((l) => l.includes('RLHF_SOURCES_CPU_ADDON='));
    t.ok(line, 'cmake printed its list');
    const list = line!
      .split('RLHF_SOURCES_CPU_ADDON=')[1]
      .split(';')
      .filter(Boolean)
      .map((p) => relative(packageRoot, p));
    t.same(list, addonCpu);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
