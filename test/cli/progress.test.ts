// Progress rendering of trainer events: TTY (one line redrawn in place with a bar and ETA) and
// plain output for pipes (bounded line count, last step always printed); number/duration formats.
import t from 'tap';
import { attachProgress, formatDuration, formatNumber } from '../../lib/cli/framework/index.js';
import { TrainerEmitter } from '../../lib/train/events.js';

function fakeStream(isTTY: boolean, columns?: number) {
  const chunks: string[] = [];
  return { chunks, isTTY, columns, write: (s: string) => (chunks.push(s), true), text: () => chunks.join('') };
}

function run(em: TrainerEmitter, stage: string, total: number, from = 1, to = total) {
  for (let step = from; step <= to; step++)
    em.emit('step', {
      stage,
      step,
      totalSteps: total,
      etaSeconds: (total - step) * 1.5,
      metrics: { loss: 2 / step, lr: 3e-5, tokensPerSecond: 12345.6, gradNorm: 0.75 },
    });
}

t.test('formatNumber', async (t) => {
  const cases: [number, string][] = [
    [0, '0'],
    [1, '1'],
    [512, '512'],
    [-7, '-7'],
    [0.5, '0.5'],
    [1.23456, '1.23'],
    [123.456, '123'],
    [-3.14159, '-3.14'],
    [999.6, '1k'],
    [1234, '1.23k'],
    [12345.6, '12.3k'],
    [999999, '1M'],
    [2.5e6, '2.5M'],
    [3.21e9, '3.21G'],
    [2e-5, '2e-5'],
    [1.234e-4, '1.23e-4'],
    [0.001, '0.001'],
    [1e15, '1e15'],
    [NaN, 'nan'],
    [Infinity, 'inf'],
    [-Infinity, '-inf'],
  ];
  for (const [x, s] of cases) t.equal(formatNumber(x), s, `${x}`);
});

t.test('formatDuration', async (t) => {
  const cases: [number, string][] = [
    [0, '0:00'],
    [5, '0:05'],
    [65, '1:05'],
    [599.6, '10:00'],
    [3600, '1:00:00'],
    [7325, '2:02:05'],
    [NaN, '-:--'],
    [-1, '-:--'],
    [Infinity, '-:--'],
  ];
  for (const [x, s] of cases) t.equal(formatDuration(x), s, `${x}`);
});

t.test('TTY: one line redrawn in place', async (t) => {
  const em = new TrainerEmitter();
  const out = fakeStream(true, 120);
  const p = attachProgress(em, out, { metrics: ['loss', 'tokensPerSecond', 'missing'], minIntervalMs: 0 });
  run(em, 'sft', 40, 1, 20);
  em.emit('log', { stage: 'sft', message: 'skipped a step: non-finite gradient' });
  em.emit('eval', { stage: 'sft', step: 20, metrics: { loss: 0.5, accuracy: 0.875 } });
  em.emit('checkpoint', { stage: 'sft', step: 20, dir: 'runs/sft/step-20' });
  run(em, 'sft', 40, 21, 40);
  p.done('sft: 40 steps in 1:00, final loss 0.05');
  const text = out.text();
  t.equal(out.chunks.filter((c) => c.startsWith('\r\x1b[K')).length >= 40, true, 'each redraw starts with \\r + clear');
  t.match(text, /\r\x1b\[Ksft \[#{10}·{10}\] {2}20\/40 {2}loss 0\.1 {2}tok\/s 12\.3k {2}eta 0:30/);
  t.match(text, /\r\x1b\[Ksft \[#{20}\] {2}40\/40 {2}loss 0\.05 {2}tok\/s 12\.3k\n/);
  t.notMatch(text, /missing|gradNorm/, 'only the chosen metrics');
  t.match(
    text,
    /\r\x1b\[Ksft: skipped a step: non-finite gradient\n\r\x1b\[Ksft \[/,
    'a log line prints above the bar, which is redrawn',
  );
  t.match(text, /sft eval @ step 20: loss 0\.5 {2}accuracy 0\.875\n/);
  t.match(text, /sft checkpoint @ step 20: runs\/sft\/step-20\n/);
  t.match(text, /\nsft: 40 steps in 1:00, final loss 0\.05\n$/, 'done() ends the line and prints the summary');
  t.equal(text.split('\n').length - 1, 5, 'newlines: log, eval, checkpoint, end of bar, summary');
  run(em, 'sft', 40, 1, 1);
  t.equal(out.text(), text, 'done() stops listening');
  p.done('again');
  t.equal(out.text(), text, 'done() is idempotent');
});

t.test('TTY: throttled redraws still end on the final state; stages get their own line', async (t) => {
  const em = new TrainerEmitter();
  const out = fakeStream(true, 64);
  const p = attachProgress(em, out, { label: 'train', metrics: ['loss'] });
  run(em, 'sft', 1000, 1, 500);
  t.ok(out.chunks.length < 50, `throttled to ${out.chunks.length} writes`);
  run(em, 'dpo', 10);
  p.done();
  const text = out.text();
  t.match(
    text,
    /train \[#{10}·{10}\] +500\/1000 {2}loss 0\.004 {2}eta 12:30\n/,
    'the last step of a stage is drawn before the next starts',
  );
  t.match(text, /train \[#{20}\] {2}10\/10 {2}loss 0\.2\n$/);
  t.ok(
    text.split(/\r\x1b\[K/).every((l) => l.replace(/\n$/, '').length <= 63),
    'fits the terminal width',
  );
});

t.test('TTY: done() draws a throttled-away last step', async (t) => {
  const em = new TrainerEmitter();
  const out = fakeStream(true);
  const p = attachProgress(em, out, { metrics: ['loss'], minIntervalMs: 60_000 });
  run(em, 'rm', 100, 1, 37);
  p.done();
  t.match(out.text(), /37\/100 {2}loss 0\.0541 {2}eta 1:35\n$/);
});

t.test('not a TTY: bounded plain lines, last step always printed', async (t) => {
  const em = new TrainerEmitter();
  const out = fakeStream(false);
  const p = attachProgress(em, out, { metrics: ['loss', 'lr'] });
  run(em, 'sft', 1000);
  em.emit('log', { stage: 'sft', message: 'hello' });
  p.done('sft: done');
  const text = out.text();
  t.notMatch(text, /\r|\x1b|#|·/, 'no control characters or bar');
  const lines = text.trimEnd().split('\n');
  const steps = lines.filter((l) => /^sft {2}\d+\/1000/.test(l));
  t.ok(steps.length >= 10 && steps.length <= 12, `${steps.length} step lines`);
  t.equal(steps[0], 'sft  1/1000  loss 2  lr 3e-5  eta 24:59');
  t.equal(steps[steps.length - 1], 'sft  1000/1000  loss 0.002  lr 3e-5');
  t.same(lines.slice(-2), ['sft: hello', 'sft: done']);

  const em2 = new TrainerEmitter();
  const out2 = fakeStream(false);
  const p2 = attachProgress(em2, out2, { every: 7 });
  run(em2, 'ppo', 30, 1, 23); // interrupted at 23
  p2.done();
  const l2 = out2.text().trimEnd().split('\n');
  t.same(
    l2.map((l) => l.split('  ')[1]),
    ['1/30', '7/30', '14/30', '21/30', '23/30'],
    'every 7 steps, and the last one seen in done()',
  );
  t.equal(
    l2[1],
    'ppo  7/30  loss 0.286  lr 3e-5  tok/s 12.3k  gradNorm 0.75  eta 0:35',
    'all metrics by default, tokensPerSecond as tok/s',
  );
});

t.test('not a TTY: the last step of a stage is printed when the next starts', async (t) => {
  const em = new TrainerEmitter();
  const out = fakeStream(false);
  const p = attachProgress(em, out, { metrics: ['loss'], every: 10 });
  run(em, 'warmup', 100, 1, 15);
  run(em, 'train', 20);
  p.done();
  const l = out
    .text()
    .trimEnd()
    .split('\n')
    .map((x) => x.split('  ').slice(0, 2).join(' '));
  t.same(l, ['warmup 1/100', 'warmup 10/100', 'warmup 15/100', 'train 1/20', 'train 10/20', 'train 20/20']);
});
