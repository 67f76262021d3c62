// Shared by the `rlhf … --nproc N --tp K` tests: running the CLI, comparing safetensors files,
// killing a whole job, the SFT data and flags.
import type { Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, packageRoot } from '../../lib/native.js';
import { readSafetensorsHeader, readTensorF32 } from '../../lib/io/safetensors.js';

export const haveMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
export const skip =
  haveMpirun && native().mpiInfo().loadable ? false : 'Open MPI not installed (scripts/install-mpi.sh)';
export const env = {
  ...process.env,
  RLHF_THREADS: '1',
  OMPI_ALLOW_RUN_AS_ROOT: '1',
  OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
  OMPI_MCA_rmaps_base_oversubscribe: '1',
};
export const main = join(packageRoot, 'dist', 'cli', 'main.js');
export const cli = (args: string[]) =>
  spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', env, timeout: 300_000 });
export const ran = (t: Test, r: ReturnType<typeof cli>, what: string) =>
  t.equal(r.status, 0, r.status ? `${what}: ${r.stderr.slice(-2000)}` : what);
export const jsonl = (file: string, rows: unknown[]) =>
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');

/** Every tensor of a safetensors file, by name. */
export async function tensors(file: string): Promise<Map<string, Float32Array>> {
  const h = await readSafetensorsHeader(file);
  const out = new Map<string, Float32Array>();
  for (const name of h.tensors.keys()) out.set(name, await readTensorF32(h, name));
  return out;
}
/** max |a − b| over every tensor of two files with the same tensors; identical: every byte equal. */
export async function compare(a: string, b: string): Promise<{ maxDiff: number; identical: boolean }> {
  const [x, y] = [await tensors(a), await tensors(b)];
  if ([...x.keys()].sort().join() !== [...y.keys()].sort().join()) throw new Error(`${a} and ${b}: other tensors`);
  let maxDiff = 0;
  for (const [name, u] of x) {
    const v = y.get(name)!;
    if (u.length !== v.length) throw new Error(`${name}: ${u.length} against ${v.length} values`);
    for (let i = 0; i < u.length; i++) maxDiff = Math.max(maxDiff, Math.abs(u[i] - v[i]));
  }
  return { maxDiff, identical: readFileSync(a).equals(readFileSync(b)) };
}
export const weights = (dir: string) => join(dir, 'model', 'model.safetensors');
export const stepLines = (dir: string) =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((m) => m.loss !== undefined);

/** The optimizer file of the newest checkpoint of a run folder. */
export function lastOptimizer(run: string): string {
  const step = Math.max(
    ...readdirSync(run)
      .filter((n) => /^checkpoint-\d+$/.test(n))
      .map((n) => Number(n.slice(11))),
  );
  const ck = join(run, `checkpoint-${step}`);
  const part = readdirSync(ck).find((n) => existsSync(join(ck, n, 'optimizer.safetensors')));
  return join(ck, part!, 'optimizer.safetensors');
}

export async function within(t: Test, a: string, b: string, tol: number, what: string) {
  const d = await compare(a, b);
  t.ok(
    d.maxDiff <= tol,
    `${what}: max |Δ| ${d.maxDiff.toExponential(2)} <= ${tol}${d.identical ? ' (bit for bit)' : ''}`,
  );
  return d;
}

/** SIGKILL to every process of session `sid` (the launcher, mpirun and its ranks). */
export function killSession(sid: number) {
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // state ppid pgrp session …
      if (Number(fields[3]) === sid) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

/** Runs `args` in a new session and kills all of it with SIGKILL once `file` exists. */
export function runUntil(args: string[], file: string): Promise<{ code: number | null; killed: boolean }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [main, ...args], { env, stdio: 'ignore', detached: true });
    let killed = false;
    const poll = setInterval(() => {
      if (!killed && existsSync(file)) {
        killed = true;
        killSession(p.pid!);
      }
    }, 5);
    p.on('error', reject);
    p.on('exit', (code) => {
      clearInterval(poll);
      if (killed) killSession(p.pid!); // ranks that outlived the launcher
      resolve({ code, killed });
    });
  });
}

/** A fresh folder holding sft.jsonl (24 one-digit sums). */
export function sftFolder(): { dir: string; sftData: string } {
  const dir = mkdtempSync(join(tmpdir(), 'rlhf-tp-cli-'));
  const sftData = join(dir, 'sft.jsonl');
  jsonl(
    sftData,
    Array.from({ length: 24 }, (_, i) => ({
      prompt: `${i % 10}+${(i * 7) % 10}=`,
      completion: String((i % 10) + ((i * 7) % 10)),
    })),
  );
  return { dir, sftData };
}
/** `rlhf sft` from scratch on that data, 4 rows of 16 tokens per step. */
export const sftFlags = (sftData: string) => [
  'sft',
  '--init',
  'tiny',
  '--data',
  sftData,
  '--seq-len',
  '16',
  '--batch-size',
  '4',
  '--lr',
  '3e-3',
];

/**
 * `rlhf <name> --nproc 2 --tp 2` against the same command on 2 thread ranks of one process (weights
 * and the last checkpoint's AdamW moments), and with `withFourRanks` `--nproc 4 --tp 2` against one
 * process without tensor parallelism, for each of `names` (dpo, rm, prm) from an SFT base.
 */
export async function compareTrainers(t: Test, names: string[], withFourRanks: boolean): Promise<void> {
  const { dir, sftData } = sftFolder();
  const SFT = sftFlags(sftData);
  const base = join(dir, 'base');
  ran(t, cli([...SFT, '--max-steps', '4', '--output', base]), 'a base model');
  const pairs = join(dir, 'pairs.jsonl');
  jsonl(
    pairs,
    Array.from({ length: 18 }, (_, i) => ({ prompt: `${i}+1=`, chosen: String(i + 1), rejected: `no ${i}` })),
  );
  const steps = join(dir, 'steps.jsonl');
  jsonl(
    steps,
    Array.from({ length: 18 }, (_, i) => ({
      prompt: `${i}+1+1=`,
      steps: [`${i}+1=${i + 1}`, `${i + 2}`],
      labels: [1, i % 3 ? 1 : 0],
    })),
  );
  const all: Record<string, string[]> = {
    dpo: ['dpo', '--policy', join(base, 'model'), '--data', pairs, '--lr', '1e-3', '--beta', '0.1'],
    rm: ['rm', '--model', join(base, 'model'), '--data', pairs, '--lr', '1e-3', '--eval-split', '0.1'],
    prm: ['prm', '--model', join(base, 'model'), '--data', steps, '--lr', '1e-3', '--eval-split', '0.1'],
  };
  for (const name of names) {
    const args = all[name];
    const o = (s: string) => join(dir, `${name}-${s}`);
    const common = [...args, '--seq-len', '24', '--batch-size', '4', '--save-every', '2'];
    ran(t, cli([...common, '--output', o('threads'), '--tp', '2']), `${name}: 2 thread ranks`);
    ran(t, cli([...common, '--output', o('p2'), '--nproc', '2', '--tp', '2']), `${name}: --nproc 2 --tp 2`);
    await within(t, weights(o('p2')), weights(o('threads')), 1e-4, `${name} weights, 2 processes vs 2 thread ranks`);
    const [a, b] = [lastOptimizer(o('p2')), lastOptimizer(o('threads'))];
    t.equal(a.slice(o('p2').length), b.slice(o('threads').length), `${name}: the same last checkpoint`);
    await within(t, a, b, 1e-6, `${name} last checkpoint's AdamW moments`);
    if (!withFourRanks) continue;
    ran(t, cli([...common, '--output', o('one')]), `${name}: one process`);
    ran(t, cli([...common, '--output', o('p4'), '--nproc', '4', '--tp', '2']), `${name}: --nproc 4 --tp 2`);
    await within(t, weights(o('p4')), weights(o('one')), 1e-4, `${name} weights, 2 × 2 processes vs one process`);
  }
}
