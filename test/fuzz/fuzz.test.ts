// The short form of `npm run fuzz`: a few hundred mutated safetensors and JSONL files from the
// committed seed corpus, fixed seed. Every input must end in a clean documented error or be
// accepted with the same content as the independent reference in harness.ts; no crash, no hang,
// no wrong line number, no silent acceptance. The figures are printed as a comment.
import t from 'tap';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { referenceJsonl, runFuzz, summary } from './harness.js';

t.test('fuzz: 400 mutated inputs, seed 1', async (t) => {
  const stats = await runFuzz({
    seed: 1,
    iterations: 400,
    seconds: 120,
    perInputMs: 5000,
    corpusDir: join(packageRoot, 'test', 'fuzz', 'corpus'),
  });
  t.comment(summary(stats, 1));
  t.equal(stats.trials, 400, 'all trials ran');
  t.same(
    stats.findings.map((f) => `${f.kind} (${f.target}, trial ${f.trial}): ${f.detail}`),
    [],
    'no crash, hang, wrong line, silent acceptance or false rejection',
  );
  t.ok(
    stats.cleanErrors > 100 && stats.accepted > 0,
    `both outcomes occur (${stats.cleanErrors} clean errors, ${stats.accepted} accepted)`,
  );
  for (const target of ['safetensors', 'jsonl:sft', 'jsonl:preference', 'jsonl:scored', 'jsonl:prompt'])
    t.ok(stats.byTarget[target]?.trials > 0, `${target} was fuzzed`);
});

t.test('the JSONL reference finds what the old reader missed', async (t) => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const bytes = (parts: (string | number[])[]) =>
    Uint8Array.from(parts.flatMap((p) => (typeof p === 'string' ? [...enc(p)] : p)));
  t.same(
    referenceJsonl(bytes(['{"prompt":"a","completion":"b"}\n{"prompt":"', [0xc3], '","completion":"x"}\n']), 'sft'),
    { badLine: 2, records: 1 },
    'invalid UTF-8 on line 2',
  );
  t.same(
    referenceJsonl(enc('{"messages":[{"role":"user","content":"q"},{"role":"assitant","content":"a"}]}\n'), 'sft')
      .badLine,
    1,
    'a typo in a role',
  );
  t.same(
    referenceJsonl(enc('\n\r\n{"prompt":"p"}\r{"prompt":"q"}'), 'prompt'),
    { records: 2 },
    'LF, CRLF and a lone CR end lines',
  );
});
