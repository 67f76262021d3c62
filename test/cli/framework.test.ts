// CLI flag parsing: every type, `=` forms, negated booleans, --config YAML/JSON, precedence,
// path resolution, and the exact one-line message of every usage error.
import t, { type Test } from 'tap';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CliError, camel, kebab, parseCommand, type CommandSpec } from '../../lib/cli/framework/index.js';

const spec: CommandSpec = {
  name: 'sft',
  summary: 'supervised fine-tuning',
  flags: {
    model: { type: 'path', describe: 'model directory', required: true },
    data: { type: 'list', describe: 'training files' },
    maxSteps: { type: 'int', describe: 'optimizer steps', default: 1000, min: 1, max: 100000 },
    lr: { type: 'number', describe: 'learning rate', default: 2e-5, min: 0 },
    beta: { type: 'number', describe: 'KL weight' },
    packing: { type: 'bool', describe: 'pack sequences', default: true },
    verbose: { type: 'bool', describe: 'more logs' },
    schedule: { type: 'enum', describe: 'lr schedule', values: ['cosine', 'linear', 'constant'], default: 'cosine' },
    name: { type: 'string', describe: 'run name' },
    out: { type: 'path', describe: 'output directory', default: 'runs/sft' },
  },
  examples: ['rlhf sft --model m'],
};

const cwd = mkdtempSync(join(tmpdir(), 'rlhf-cli-'));
const parse = (...argv: string[]) => parseCommand(spec, argv, { cwd });
const opts = async (...argv: string[]) => (await parse(...argv)).options;
/** Rejects with a one-line CliError (exit code 2) whose message is exactly `message`. */
async function fails(t: Test, argv: string[], message: string | RegExp): Promise<void> {
  const err = await parse(...argv).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof CliError)) return void t.fail(`${argv.join(' ')}: expected a CliError, got ${err}`);
  t.equal(err.exitCode, 2);
  if (typeof message === 'string') t.equal(err.message, message);
  else t.match(err.message, message);
  t.notMatch(err.message, /\n/, 'one line');
}

t.test('names', async (t) => {
  t.equal(kebab('maxSteps'), 'max-steps');
  t.equal(camel('max-steps'), 'maxSteps');
  t.equal(kebab('lr'), 'lr');
});

t.test('every type, both value forms, defaults', async (t) => {
  const o = await opts(
    '--model',
    'm',
    '--max-steps',
    '10',
    '--lr=3e-4',
    '--schedule=linear',
    '--name',
    'run 1',
    '--data',
    'a.jsonl,b.jsonl',
    '--data=c.jsonl',
    '--verbose',
  );
  t.same(o, {
    model: join(cwd, 'm'),
    data: ['a.jsonl', 'b.jsonl', 'c.jsonl'],
    maxSteps: 10,
    lr: 3e-4,
    packing: true,
    verbose: true,
    schedule: 'linear',
    name: 'run 1',
    out: join(cwd, 'runs/sft'),
  });
  t.notOk('beta' in o, 'no default and not given: absent');
  t.equal((await opts('--model', 'm', '--beta', '-0.5')).beta, -0.5, 'negative number as a value');
  t.equal((await opts('--model', 'm', '--beta=-1e-3')).beta, -1e-3);
  t.equal((await opts('--model=/abs/m')).model, '/abs/m', 'absolute paths stay');
});

t.test('booleans', async (t) => {
  t.equal((await opts('--model', 'm')).packing, true, 'default');
  t.equal((await opts('--model', 'm', '--no-packing')).packing, false);
  t.equal((await opts('--model', 'm', '--packing=false')).packing, false);
  t.equal((await opts('--model', 'm', '--packing=true')).packing, true);
  t.equal((await opts('--model', 'm')).verbose, false, 'bool without default is false');
  t.equal((await opts('--model', 'm', '--verbose=yes')).verbose, true);
  await fails(t, ['--model', 'm', '--packing=maybe'], '--packing must be true or false, got "maybe"');
  await fails(t, ['--model', 'm', '--no-packing=1'], '--no-packing takes no value, got "1"');
  await fails(t, ['--model', 'm', '--no-lr'], /^unknown flag --no-lr/);
  await fails(t, ['--model', 'm', '--packing', '--no-packing'], '--packing was given more than once');
});

t.test('help', async (t) => {
  t.same(await parse('-h'), { options: {}, help: true });
  t.same(await parse('--bogus', '--help'), { options: {}, help: true }, 'help wins over errors');
  t.equal((await parse('--model', 'm')).help, false);
});

t.test('positional', async (t) => {
  const withPos: CommandSpec = { ...spec, positional: { name: 'run-dir', describe: 'a run' } };
  t.equal((await parseCommand(withPos, ['runs/x', '--model', 'm'], { cwd })).options.runDir, 'runs/x');
  t.equal((await parseCommand(withPos, ['--model', 'm', '--', '--odd'], { cwd })).options.runDir, '--odd');
  await t.rejects(parseCommand(withPos, ['a', 'b', '--model', 'm'], { cwd }), { message: 'unexpected argument "b"' });
  await fails(t, ['stray', '--model', 'm'], 'unexpected argument "stray"');
});

t.test('command-line errors', async (t) => {
  await fails(t, ['--model', 'm', '--max-step', '5'], 'unknown flag --max-step (did you mean --max-steps?)');
  await fails(t, ['--model', 'm', '--maxSteps', '5'], 'unknown flag --maxSteps (did you mean --max-steps?)');
  await fails(t, ['--model', 'm', '--zzzzzzzz'], 'unknown flag --zzzzzzzz');
  await fails(t, ['--model', 'm', '-x'], 'unknown flag -x');
  await fails(t, ['--help=yes'], '--help takes no value, got "yes"');
  await fails(t, ['--model', 'm', '--confg', 'a.yaml'], 'unknown flag --confg (did you mean --config?)');
  await fails(t, ['--model', 'm', '--lr', 'fast'], '--lr must be a number >= 0, got "fast"');
  await fails(t, ['--model', 'm', '--lr', '-1'], '--lr must be a number >= 0, got "-1"');
  await fails(
    t,
    ['--model', 'm', '--max-steps', '1.5'],
    '--max-steps must be an integer >= 1 and <= 100000, got "1.5"',
  );
  await fails(t, ['--model', 'm', '--max-steps', '0'], '--max-steps must be an integer >= 1 and <= 100000, got "0"');
  await fails(t, ['--model', 'm', '--max-steps=1e9'], '--max-steps must be an integer >= 1 and <= 100000, got "1e9"');
  await fails(t, ['--model', 'm', '--beta', 'Infinity'], '--beta must be a number, got "Infinity"');
  await fails(
    t,
    ['--model', 'm', '--schedule', 'cosin'],
    '--schedule must be one of cosine, linear, constant, got "cosin" (did you mean cosine?)',
  );
  await fails(
    t,
    ['--model', 'm', '--schedule', 'step'],
    '--schedule must be one of cosine, linear, constant, got "step"',
  );
  await fails(t, ['--model'], 'missing value after --model');
  await fails(t, ['--model', '--lr', '1'], 'missing value after --model');
  await fails(t, ['--model', 'm', '--name='], '--name must be a non-empty string, got ""');
  await fails(t, ['--model', 'a', '--model', 'b'], '--model was given more than once');
  await fails(t, ['--lr', '1'], 'missing required flag --model');
  await fails(t, ['--model', 'm', '--config'], 'missing value after --config');
  await fails(t, ['--model', 'm', '--config', 'a.yaml', '--config', 'b.yaml'], '--config was given more than once');
});

t.test('config files: YAML and JSON, precedence, path resolution', async (t) => {
  const dir = join(cwd, 'configs');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'sft.yaml'),
    [
      '# a run',
      'model: ../models/tiny',
      'max-steps: 50',
      'lr: 1e-5',
      'packing: false',
      'data: [a.jsonl, b.jsonl]',
      'schedule: linear',
      'beta: ~',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'sft.json'),
    JSON.stringify({ model: 'tiny', maxSteps: 7, out: 'out', data: 'x.jsonl,y.jsonl', verbose: 'true' }),
  );

  const y = await opts('--config', 'configs/sft.yaml');
  t.equal(y.model, join(cwd, 'models/tiny'), 'config paths are relative to the config file');
  t.equal(y.maxSteps, 50, 'kebab-case key');
  t.equal(y.lr, 1e-5);
  t.equal(y.packing, false);
  t.same(y.data, ['a.jsonl', 'b.jsonl'], 'list from a YAML sequence');
  t.equal(y.schedule, 'linear');
  t.notOk('beta' in y, 'null leaves the default');
  t.equal(y.out, join(cwd, 'runs/sft'), 'path defaults resolve against cwd');
  t.equal(y.config, join(dir, 'sft.yaml'));

  const over = await opts('--config=configs/sft.yaml', '--max-steps', '3', '--packing', '--model', 'cli-model');
  t.equal(over.maxSteps, 3, 'flag > config');
  t.equal(over.packing, true, 'flag > config for booleans');
  t.equal(over.model, join(cwd, 'cli-model'), 'command-line paths are relative to cwd');
  t.equal(over.lr, 1e-5, 'config > default');

  const j = await opts('--config', join(dir, 'sft.json'), '--data', 'z.jsonl');
  t.equal(j.model, join(dir, 'tiny'));
  t.equal(j.maxSteps, 7, 'camelCase key');
  t.equal(j.out, join(dir, 'out'));
  t.same(j.data, ['z.jsonl'], 'a command-line list replaces the config list');
  t.equal(j.verbose, true, 'boolean from a string');
  t.same(
    (await opts('--config', join(dir, 'sft.json'))).data,
    ['x.jsonl', 'y.jsonl'],
    'comma-separated list in a config',
  );

  writeFileSync(join(dir, 'empty.yml'), '# nothing\n');
  t.equal((await opts('--config', 'configs/empty.yml', '--model', 'm')).maxSteps, 1000, 'an empty config file is fine');
});

t.test('config file errors', async (t) => {
  const write = (name: string, text: string) => (writeFileSync(join(cwd, name), text), name);
  await fails(
    t,
    ['--config', write('config.yaml', 'model: m\nlr: fast\n')],
    'config.yaml: "lr" must be a number >= 0, got "fast"',
  );
  await fails(
    t,
    ['--config', write('c1.yaml', 'model: m\nlearningRate: 1\n')],
    'c1.yaml: unknown key "learningRate" (did you mean "lr"?)',
  );
  await fails(
    t,
    ['--config', write('c2.yaml', 'model: m\nmaxStep: 1\n')],
    'c2.yaml: unknown key "maxStep" (did you mean "maxSteps"?)',
  );
  await fails(
    t,
    ['--config', write('c3.yaml', 'model: m\nmax-step: 1\n')],
    'c3.yaml: unknown key "max-step" (did you mean "max-steps"?)',
  );
  await fails(t, ['--config', write('c4.yaml', 'model: m\nzzzzzzzzzz: 1\n')], 'c4.yaml: unknown key "zzzzzzzzzz"');
  await fails(
    t,
    ['--config', write('c5.yaml', 'model: m\nmax-steps: 2\nmaxSteps: 3\n')],
    'c5.yaml: "max-steps" and "maxSteps" set the same flag',
  );
  await fails(
    t,
    ['--config', write('c6.yaml', 'model:\n  path: m\n')],
    'c6.yaml: "model" must be a path, got an object (Object)',
  );
  await fails(
    t,
    ['--config', write('c7.yaml', 'model: m\nmax-steps: 2.5\n')],
    'c7.yaml: "max-steps" must be an integer >= 1 and <= 100000, got 2.5',
  );
  await fails(
    t,
    ['--config', write('c8.yaml', 'model: m\nschedule: step\n')],
    'c8.yaml: "schedule" must be one of cosine, linear, constant, got "step"',
  );
  await fails(
    t,
    ['--config', write('c9.yaml', 'model: m\ndata: {a: 1}\n')],
    'c9.yaml: "data" must be a list of strings (comma-separated or repeated), got an object (Object)',
  );
  await fails(
    t,
    ['--config', write('c10.yaml', '- model\n- m\n')],
    'c10.yaml: expected a mapping of flag names to values, got array(2)',
  );
  await fails(t, ['--config', write('c11.yaml', 'model: [unclosed\n')], /^c11\.yaml: not valid YAML: /);
  await fails(t, ['--config', write('c12.json', '{"model": ')], /^c12\.json: not valid JSON: /);
  await fails(
    t,
    ['--config', write('c13.toml', 'model = "m"\n')],
    'config file c13.toml must end in .yaml, .yml or .json',
  );
  await fails(
    t,
    ['--config', write('c14.yaml', 'config: other.yaml\n')],
    'c14.yaml: a config file cannot name another config file',
  );
  await fails(t, ['--config', 'missing.yaml'], 'config file missing.yaml does not exist');
  await fails(t, ['--config', write('c15.yaml', 'lr: 1\n')], 'missing required flag --model');
  await fails(
    t,
    ['--config', write('c16.yaml', 'model: m\npacking: sometimes\n')],
    'c16.yaml: "packing" must be true or false, got "sometimes"',
  );
});

t.test('spec mistakes are programmer errors', async (t) => {
  const bad = (flags: CommandSpec['flags']) => parseCommand({ ...spec, flags }, [], { cwd });
  await t.rejects(bad({ config: { type: 'path', describe: '' } }), {
    name: 'Error',
    message: /flag config is reserved/,
  });
  await t.rejects(bad({ 'max-steps': { type: 'int', describe: '' } }), { message: /must be camelCase/ });
  await t.rejects(bad({ loss: { type: 'enum', describe: '' } }), { message: /enum without values/ });
});
