// runCommand: help, exit codes and error lines for usage mistakes and failures, RLHF_DEBUG stacks,
// and the Ctrl-C protocol (first: interrupt hooks, exit 130 after a clean stop; second: exit 130 now).
import t, { type Test } from 'tap';
import {
  CliError,
  EXIT_INTERRUPTED,
  interrupted,
  onInterrupt,
  runCommand,
  type CommandSpec,
} from '../../lib/cli/framework/index.js';
import { ErrorCode, RlhfError } from '../../lib/errors.js';

const spec: CommandSpec = {
  name: 'sft',
  summary: 'supervised fine-tuning',
  flags: { steps: { type: 'int', describe: 'optimizer steps', default: 3, min: 1 } },
  examples: ['rlhf sft --steps 10'],
};

function io() {
  const out: string[] = [],
    err: string[] = [],
    exits: number[] = [];
  return {
    out,
    err,
    exits,
    io: {
      stdout: { write: (s: string) => (out.push(s), true) },
      stderr: { write: (s: string) => (err.push(s), true) },
      exit: (c: number) => void exits.push(c),
    },
  };
}

t.test('success, options and return codes', async (t) => {
  const s = io();
  let seen: Record<string, unknown> = {};
  t.equal(
    await runCommand(spec, ['--steps', '5'], async (o, ctx) => ((seen = o), ctx.stdout.write('ok\n'), undefined), s.io),
    0,
  );
  t.same(seen, { steps: 5 });
  t.same(s.out, ['ok\n'], 'the handler writes to the given stdout');
  t.equal(await runCommand(spec, [], async () => 3, s.io), 3, 'a returned code is the exit code');
  t.same(s.err, []);
});

t.test('--help prints help and exits 0 without running the handler', async (t) => {
  const s = io();
  let ran = false;
  t.equal(await runCommand(spec, ['--help'], async () => void (ran = true), s.io), 0);
  t.notOk(ran);
  t.match(s.out.join(''), /^usage: rlhf sft \[flags\]/);
  t.match(s.out.join(''), /--steps <int>/);
});

t.test('usage mistakes exit 2 with the message and a pointer to --help', async (t) => {
  const s = io();
  t.equal(await runCommand(spec, ['--step', '5'], async () => 0, s.io), 2);
  t.equal(s.err.join(''), 'rlhf sft: unknown flag --step (did you mean --steps?)\nrun "rlhf sft --help" for usage\n');
  const s2 = io();
  t.equal(
    await runCommand(
      spec,
      [],
      async () => {
        throw new CliError('--steps must be even with --packing');
      },
      s2.io,
    ),
    2,
    'a handler may throw CliError too',
  );
  t.equal(s2.err.join(''), 'rlhf sft: --steps must be even with --packing\nrun "rlhf sft --help" for usage\n');
});

t.test('failures exit 1 with the message and code; stack only with RLHF_DEBUG', async (t) => {
  const saved = process.env.RLHF_DEBUG;
  t.teardown(() => (saved === undefined ? delete process.env.RLHF_DEBUG : (process.env.RLHF_DEBUG = saved)));
  delete process.env.RLHF_DEBUG;
  const fail = async () => {
    throw new RlhfError(ErrorCode.IO, 'cannot read models/tiny/config.json');
  };
  const s = io();
  t.equal(await runCommand(spec, [], fail, s.io), 1);
  t.equal(s.err.join(''), 'rlhf sft: cannot read models/tiny/config.json [ERR_RLHF_IO]\n');
  const s2 = io();
  t.equal(
    await runCommand(
      spec,
      [],
      async () => {
        throw new Error('plain');
      },
      s2.io,
    ),
    1,
  );
  t.equal(s2.err.join(''), 'rlhf sft: plain\n');
  const s3 = io();
  t.equal(
    await runCommand(
      spec,
      [],
      async () => {
        throw 'a string';
      },
      s3.io,
    ),
    1,
  );
  t.equal(s3.err.join(''), 'rlhf sft: a string\n');
  process.env.RLHF_DEBUG = '1';
  const s4 = io();
  t.equal(await runCommand(spec, [], fail, s4.io), 1);
  t.match(
    s4.err.join(''),
    /^rlhf sft: cannot read models\/tiny\/config\.json \[ERR_RLHF_IO\]\nRlhfError: cannot read[^\n]*\n\s+at /,
  );
});

/** Runs a command whose handler presses Ctrl-C `presses` times (calling only runCommand's listener). */
async function withCtrlC(t: Test, presses: number, register: boolean) {
  const s = io();
  const before = process.listeners('SIGINT');
  const calls: string[] = [];
  const code = await runCommand(
    spec,
    [],
    async () => {
      const ours = process.listeners('SIGINT').filter((l) => !before.includes(l));
      if (ours.length !== 1) throw new Error(`expected one SIGINT listener, found ${ours.length}`);
      if (register) onInterrupt(() => calls.push('stop'));
      for (let i = 0; i < presses; i++) (ours[0] as () => void)();
      calls.push(`interrupted=${interrupted()}`);
    },
    s.io,
  );
  t.same(process.listeners('SIGINT'), before, 'the SIGINT listener is removed afterwards');
  return { code, calls, exits: s.exits, err: s.err.join('') };
}

t.test('Ctrl-C', async (t) => {
  const once = await withCtrlC(t, 1, true);
  t.same(once.calls, ['stop', 'interrupted=true'], 'first Ctrl-C runs the hooks');
  t.same(once.exits, [], 'and does not exit');
  t.equal(once.code, EXIT_INTERRUPTED, 'a run stopped by Ctrl-C exits 130');
  t.match(
    once.err,
    /rlhf sft: interrupted: stopping after the current step and saving a checkpoint \(Ctrl-C again to quit now\)/,
  );

  const twice = await withCtrlC(t, 2, true);
  t.same(twice.calls, ['stop', 'interrupted=true'], 'hooks run once');
  t.same(twice.exits, [130], 'second Ctrl-C exits 130 at once');

  const noHooks = await withCtrlC(t, 1, false);
  t.same(noHooks.exits, [130], 'with no hook, the first Ctrl-C exits');

  const none = await withCtrlC(t, 0, true);
  t.equal(none.code, 0);
  t.same(none.calls, ['interrupted=false'], 'no Ctrl-C: hooks do not run');

  const dispose = onInterrupt(() => {});
  t.equal(typeof dispose, 'function');
  dispose();
});
