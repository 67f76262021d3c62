// Experiment tracking: CRC-32C against the RFC 3720 test vectors, TFRecord framing and Event
// protobufs written by TensorBoardWriter and read back (by lib/track's reader and, when
// python3-protobuf is installed, by an independent reader on the official protobuf runtime),
// torn and corrupted files, and the MLflow client against a loopback fake server that checks
// every request's shape.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import {
  attachTracking,
  crc32c,
  histogramOf,
  maskedCrc32c,
  MlflowRun,
  readEventFile,
  readRecords,
  TensorBoardWriter,
  tfRecord,
  zeroRewardVariance,
} from '../../lib/track/index.js';
import { TrainerEmitter, type RolloutEvent } from '../../lib/train/events.js';
import { Rng } from '../helpers/random.js';

const dir = mkdtempSync(join(tmpdir(), 'rlhf-track-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('crc32c: RFC 3720 B.4 test vectors and the check value', async (t) => {
  t.equal(crc32c(new Uint8Array(32)), 0x8a9136aa, '32 zero bytes');
  t.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43, '32 bytes of 0xff');
  t.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e, 'incrementing 0..31');
  t.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c, 'decrementing 31..0');
  t.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283, 'the CRC-32C check value');
  // masked: rotate right 15 and add 0xa282ead8, against a direct BigInt computation
  const data = new TextEncoder().encode('tfrecord');
  const c = BigInt(crc32c(data));
  t.equal(maskedCrc32c(data), Number((((c >> 15n) | (c << 17n)) + 0xa282ead8n) & 0xffffffffn));
});

t.test('tfRecord framing: length, masked CRCs, data; torn tails skipped, corruption reported', async (t) => {
  const data = new TextEncoder().encode('hello events');
  const r = tfRecord(data);
  const dv = new DataView(r.buffer);
  t.equal(r.length, 16 + data.length);
  t.equal(Number(dv.getBigUint64(0, true)), data.length);
  t.equal(dv.getUint32(8, true), maskedCrc32c(r.subarray(0, 8)));
  t.same(Array.from(r.subarray(12, 12 + data.length)), Array.from(data));
  t.equal(dv.getUint32(12 + data.length, true), maskedCrc32c(data));
  const two = new Uint8Array([...r, ...tfRecord(new Uint8Array([1, 2, 3]))]);
  t.equal(readRecords(two).length, 2);
  t.equal(readRecords(two.subarray(0, two.length - 2)).length, 1, 'a torn last record is dropped');
  const bad = two.slice();
  bad[14] ^= 1;
  t.throws(() => readRecords(bad, 'x.tfevents'), /x\.tfevents: record at byte 0: data checksum mismatch/);
});

t.test('histogramOf: counts sum to the sample count, edges increasing, moments exact', async (t) => {
  const g = new Rng(7);
  const v = Array.from({ length: 500 }, () => g.uniform(-1, 3));
  const h = histogramOf(v, 20);
  t.equal(
    h.bucket.reduce((a, b) => a + b, 0),
    500,
  );
  t.equal(h.num, 500);
  t.equal(h.min, Math.min(...v));
  t.equal(h.max, Math.max(...v));
  t.ok(h.bucketLimit.every((x, i) => i === 0 || x > h.bucketLimit[i - 1]));
  t.ok(Math.abs(h.sum - v.reduce((a, b) => a + b, 0)) < 1e-9);
  // bucket i holds [limit[i-1], limit[i]) (the first from the minimum, the last up to and with the maximum)
  const expected = h.bucketLimit.map(
    (hi, i) => v.filter((x) => x >= (i ? h.bucketLimit[i - 1] : -Infinity) && (i === 19 ? x <= hi : x < hi)).length,
  );
  t.same(h.bucket, expected);
  t.same(histogramOf([2, 2, 2]).bucket, [3], 'a constant sample: one bucket');
  t.equal(histogramOf([NaN, Infinity]).num, 0, 'non-finite values are left out');
});

t.test('TensorBoardWriter: scalars, histograms and text read back', async (t) => {
  const w = new TensorBoardWriter(join(dir, 'tb'));
  t.match(w.path, /events\.out\.tfevents\.\d+\./);
  for (let step = 1; step <= 5; step++) w.scalars(step, { 'sft/loss': 1 / step, 'sft/lr': 1e-4 });
  const h = histogramOf([0.5, 1, 1.5, 3], 3);
  w.write(6, [
    { tag: 'ppo/rollout/reward', histogram: h },
    { tag: 'ppo/samples', text: '| a | b |\n|---|---|\n| é | 2 |' },
  ]);
  w.close();
  const events = readEventFile(w.path);
  t.equal(events[0].fileVersion, 'brain.Event:2');
  t.equal(events.length, 7);
  t.same(
    events.slice(1, 6).map((e) => e.step),
    [1, 2, 3, 4, 5],
  );
  t.equal(events[3].values.find((v) => v.tag === 'sft/loss')!.scalar, Math.fround(1 / 3), 'simple_value is a float32');
  t.ok(Math.abs(events[2].wallTime - Date.now() / 1000) < 60, 'wall_time in seconds');
  const last = events[6];
  t.same(last.values[0].histogram, h);
  t.equal(last.values[1].text, '| a | b |\n|---|---|\n| é | 2 |');
  t.equal(last.values[1].plugin, 'text');
  t.throws(() => w.scalars(7, { x: 1 }), /closed/);
  t.throws(
    () => new TensorBoardWriter(join(dir, 'tb')).write(-1, [{ tag: 'x', scalar: 1 }]),
    /expected step to be an integer >= 0, received -1/,
  );

  // a torn append (crash mid-write) keeps every whole record
  appendFileSync(w.path, tfRecord(new Uint8Array(40)).subarray(0, 20));
  t.equal(readEventFile(w.path).length, 7);

  // Debian's python3-protobuf lives in /usr/bin/python3 (a pyenv python3 may come first on PATH)
  const python = ['python3', '/usr/bin/python3'].find(
    (p) => spawnSync(p, ['-c', 'import google.protobuf'], { encoding: 'utf8' }).status === 0,
  );
  if (!python) {
    t.comment('python3-protobuf not installed (scripts/install-test-tools.sh): independent reader skipped');
    return;
  }
  const r = spawnSync(python, [join(packageRoot, 'test', 'helpers', 'read_tfevents.py'), w.path], { encoding: 'utf8' });
  t.equal(r.status, 1, 'the independent reader refuses the torn tail (strict)');
  // the strict reader on the file without the torn tail
  const clean = join(dir, 'clean.tfevents');
  writeFileSync(clean, readFileSync(w.path).subarray(0, readFileSync(w.path).length - 20));
  const ok = spawnSync(python, [join(packageRoot, 'test', 'helpers', 'read_tfevents.py'), clean], { encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stderr);
  const pyEvents = ok.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.equal(pyEvents.length, 7);
  t.equal(pyEvents[0].file_version, 'brain.Event:2');
  t.same(
    pyEvents.map((e: { step: number }) => e.step),
    [0, 1, 2, 3, 4, 5, 6],
  );
  t.equal(pyEvents[3].values.find((v: { tag: string }) => v.tag === 'sft/loss').simple_value, Math.fround(1 / 3));
  t.same(pyEvents[6].values[0].histo, {
    min: h.min,
    max: h.max,
    num: h.num,
    sum: h.sum,
    sum_squares: h.sumSquares,
    bucket_limit: h.bucketLimit,
    bucket: h.bucket,
  });
  t.same(pyEvents[6].values[1], {
    tag: 'ppo/samples',
    text: '| a | b |\n|---|---|\n| é | 2 |',
    plugin: 'text',
    dtype: 7,
  });
});

const rollout = (step: number, rewards: number[], n: number): RolloutEvent => ({
  stage: 'group',
  step,
  samplesPerPrompt: n,
  samples: rewards.map((reward, i) => ({
    prompt: `What is ${i}+1?`,
    response: `answer | ${i}`,
    reward,
    kl: 0.1 * i,
    advantage: reward - 0.5,
    length: 3 + i,
  })),
});

t.test('attachTracking: trainer events → TensorBoard, printed samples, one zero-variance warning', async (t) => {
  const em = new TrainerEmitter();
  const logs: string[] = [];
  em.on('log', (e) => logs.push(e.message));
  const tr = attachTracking(em, { tensorboardDir: join(dir, 'run'), printSamples: 2, samplesShown: 2 });
  em.emit('step', { stage: 'group', step: 1, totalSteps: 4, etaSeconds: 0, metrics: { rewardMean: 0.25, kl: 0.5 } });
  em.emit('rollout', rollout(1, [0, 1, 1, 0], 2));
  em.emit('step', { stage: 'group', step: 2, totalSteps: 4, etaSeconds: 0, metrics: { rewardMean: 1, kl: 0.7 } });
  em.emit('rollout', rollout(2, [1, 1, 0, 0], 2));
  em.emit('rollout', rollout(3, [1, 1, 1, 1], 2));
  em.emit('eval', { stage: 'group', step: 3, metrics: { accuracy: 0.9 } });
  await tr.close();
  const events = readEventFile(tr.tensorboardPath!);
  const scalars = events.flatMap((e) =>
    e.values.filter((v) => v.scalar !== undefined).map((v) => [e.step, v.tag, v.scalar]),
  );
  t.same(scalars, [
    [1, 'group/rewardMean', 0.25],
    [1, 'group/kl', 0.5],
    [2, 'group/rewardMean', 1],
    [2, 'group/kl', Math.fround(0.7)],
    [3, 'group/eval/accuracy', Math.fround(0.9)],
  ]);
  const hist = events.find((e) => e.step === 1 && e.values.some((v) => v.histogram))!;
  t.same(
    hist.values.filter((v) => v.histogram).map((v) => v.tag),
    ['group/rollout/reward', 'group/rollout/advantage', 'group/rollout/kl', 'group/rollout/length'],
  );
  t.equal(hist.values[0].histogram!.num, 4);
  const table = hist.values.find((v) => v.text)!.text!;
  t.match(table, /^\| prompt \| response \| reward \| KL \|/);
  t.match(table, /answer \\\| 0/, 'pipes in cells escaped');
  t.equal(table.split('\n').length, 4, 'two samples: one per group');
  t.equal(logs.filter((l) => l.startsWith('samples @ iteration')).length, 1, 'printed every 2 iterations');
  t.match(
    logs.find((l) => l.startsWith('samples'))!,
    /prompt "What is 0\+1\?"\n  → "answer \| 0"  reward 1\.00  KL 0\.00/,
  );
  t.equal(
    logs.filter((l) => /zero reward variance/.test(l)).length,
    2,
    'one warning at the first flat iteration, one count at the end',
  );
  t.match(logs.join('\n'), /iteration 2: every group has zero reward variance/);
  t.match(logs.join('\n'), /2 of 3 iterations had zero reward variance/);
  t.ok(zeroRewardVariance(rollout(1, [3, 3, 3], 1)), 'one sample per prompt: the whole batch');
  t.notOk(zeroRewardVariance(rollout(1, [3, 3, 4], 1)));
});

t.test('MlflowRun against a loopback fake server that checks each request', async (t) => {
  const seen: Array<{ path: string; body: Record<string, unknown> }> = [];
  const problems: string[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      const body = JSON.parse(raw);
      seen.push({ path: req.url!, body });
      if (req.method !== 'POST' || req.headers['content-type'] !== 'application/json')
        problems.push(`${req.method} ${req.headers['content-type']}`);
      if (req.url === '/api/2.0/mlflow/runs/create') {
        if (typeof body.experiment_id !== 'string' || !Number.isInteger(body.start_time) || !Array.isArray(body.tags))
          problems.push('create shape');
        res.end(JSON.stringify({ run: { info: { run_id: 'r123', experiment_id: body.experiment_id } } }));
      } else if (req.url === '/api/2.0/mlflow/runs/log-batch') {
        if (body.run_id !== 'r123') problems.push('run_id');
        for (const m of body.metrics ?? [])
          if (
            typeof m.key !== 'string' ||
            typeof m.value !== 'number' ||
            !Number.isInteger(m.timestamp) ||
            !Number.isInteger(m.step)
          )
            problems.push(`metric ${JSON.stringify(m)}`);
        for (const p of body.params ?? [])
          if (typeof p.key !== 'string' || typeof p.value !== 'string') problems.push(`param ${JSON.stringify(p)}`);
        if ((body.metrics ?? []).length > 1000 || (body.params ?? []).length > 100) problems.push('batch too large');
        res.end('{}');
      } else if (req.url === '/api/2.0/mlflow/runs/update') {
        if (body.run_id !== 'r123' || body.status !== 'FINISHED' || !Number.isInteger(body.end_time))
          problems.push('update shape');
        res.end('{"run_info": {}}');
      } else {
        res.statusCode = 404;
        res.end('{"error_code": "ENDPOINT_NOT_FOUND"}');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const uri = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  const run = await MlflowRun.create(uri, { runName: 'ppo', tags: { 'mlflow.source.name': 'rlhf ppo' } });
  t.equal(run.runId, 'r123');
  run.params({ lr: 1e-5, output: '/tmp/x', quick: true, long: 'x'.repeat(900) });
  for (let step = 1; step <= 600; step++)
    run.metrics(step, { 'ppo/loss': 1 / step, 'ppo/time/generate': 0.1, 'ppo/nan': NaN });
  await run.close();
  t.same(problems, []);
  t.same(
    seen.map((s) => s.path.replace('/api/2.0/mlflow/', '')),
    ['runs/create', 'runs/log-batch', 'runs/log-batch', 'runs/log-batch', 'runs/update'],
  );
  const metrics = seen.flatMap((s) => (s.body.metrics as Array<{ key: string; step: number; value: number }>) ?? []);
  t.equal(metrics.length, 1200, 'every finite metric, NaN left out');
  t.same(
    metrics.slice(0, 2).map((m) => [m.key, m.step, m.value]),
    [
      ['ppo/loss', 1, 1],
      ['ppo/time/generate', 1, 0.1],
    ],
  );
  t.equal((seen[1].body.params as Array<{ value: string }>).find((p) => p.value.startsWith('xxx'))!.value.length, 500);
  await t.rejects(MlflowRun.create(`${uri}nowhere`), /HTTP 404/);
  await t.rejects(MlflowRun.create('ftp://x'), /expected uri to be an http\(s\) URL/);
});
