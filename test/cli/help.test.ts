// `rlhf <command> --help`: flags with placeholders, defaults, enum values and ranges, examples,
// the --config note, aligned columns, and nothing wider than 100 columns.
import t from 'tap';
import { formatHelp, HELP_WIDTH, wrap, type CommandSpec } from '../../lib/cli/framework/index.js';

const spec: CommandSpec = {
  name: 'dpo',
  summary: 'direct preference optimization on chosen/rejected pairs',
  description:
    'Trains the policy against a frozen reference with the DPO family of losses. Checkpoints are written to --out every --save-every steps; ' +
    'a run resumes from its latest checkpoint with --resume. A very-long-unbreakable-word-'.concat('x'.repeat(120)),
  flags: {
    model: { type: 'path', describe: 'policy model directory', required: true, placeholder: 'dir' },
    data: { type: 'list', describe: 'preference JSONL files', required: true },
    maxSteps: { type: 'int', describe: 'optimizer steps', default: 1000, min: 1 },
    beta: { type: 'number', describe: 'KL weight of the implicit reward', default: 0.1, min: 0, max: 10 },
    lr: { type: 'number', describe: 'peak learning rate', default: 5e-7 },
    packing: { type: 'bool', describe: 'pack several pairs per sequence', default: true },
    verbose: { type: 'bool', describe: 'log every step' },
    schedule: { type: 'enum', describe: 'learning-rate schedule', values: ['cosine', 'linear'], default: 'cosine' },
    lossType: {
      type: 'enum',
      describe:
        'which preference loss to optimize; sigmoid is DPO, ipo is IPO, hinge is SLiC, and the rest are the robust variants described in the docs',
      values: ['sigmoid', 'ipo', 'hinge', 'robust', 'exo-pair', 'bco-pair'],
      default: 'sigmoid',
    },
    stop: { type: 'list', describe: 'stop strings', default: [] },
    referenceModelWithAVeryLongFlagName: { type: 'path', describe: 'reference model (default: the policy at step 0)' },
  },
  examples: [
    'rlhf dpo --model models/tiny --data data/prefs.jsonl --beta 0.1',
    'rlhf dpo --config configs/dpo.yaml --loss-type ipo --data data/a.jsonl,data/b.jsonl --out runs/dpo-ipo-with-a-long-name --no-packing',
  ],
};

t.test('help contents', async (t) => {
  const h = formatHelp(spec);
  t.match(h, /^usage: rlhf dpo --model <dir> --data <a,b,\.\.\.> \[flags\]\n/);
  t.match(h, /direct preference optimization/);
  t.match(h, /Trains the policy against a frozen reference/);
  t.match(h, /\n {2}--max-steps <int> +optimizer steps \(>= 1; default: 1000\)\n/);
  t.match(h, /--beta <number> +KL weight of the implicit reward \(0 to 10; default: 0\.1\)/);
  t.match(h, /--lr <number> +peak learning rate \(default: 5e-7\)/);
  t.match(h, /--\[no-\]packing +pack several pairs per sequence \(default: true\)/);
  t.match(h, /--verbose +log every step\n/, 'a false default is not shown');
  t.match(h, /--schedule <cosine\|linear> +learning-rate schedule \(default: cosine\)/);
  t.match(h, /--loss-type <value> +which preference loss/);
  t.match(h, /one of: sigmoid, ipo, hinge, robust, exo-pair, bco-pair/);
  t.match(h, /--model <dir> +policy model directory \(required\)/);
  t.match(h, /--data <a,b,\.\.\.> +preference JSONL files \(required; comma-separated or repeated\)/);
  t.match(h, /--stop <a,b,\.\.\.> +stop strings \(comma-separated or repeated; default: \(none\)\)/);
  t.match(h, /--config <file> +read flags from a YAML or JSON file/);
  t.match(h, /-h, --help +show this help/);
  t.match(h, /examples:\n {2}rlhf dpo --model models\/tiny --data data\/prefs\.jsonl --beta 0\.1\n/);
  t.match(h, / \\\n {6}\S/, 'a long example continues with a backslash');
  t.match(h, /Every flag can also come from --config/);
});

t.test('layout: width and aligned columns', async (t) => {
  const h = formatHelp(spec);
  const lines = h.split('\n');
  for (const l of lines) t.ok(l.length <= HELP_WIDTH, `fits: ${JSON.stringify(l.slice(0, 40))} (${l.length})`);
  t.notOk(
    lines.some((l) => / $/.test(l)),
    'no trailing spaces',
  );
  // where the description starts on each `  --flag ...  description` line
  const starts = lines.map((l) => /^ {2}-\S*(?: \S+)* {2,}(?=\S)/.exec(l)?.[0].length).filter((n) => n !== undefined);
  t.ok(starts.length >= 8);
  t.equal(new Set(starts).size, 1, 'descriptions start in one column');
  t.match(
    h,
    /\n {2}--reference-model-with-a-very-long-flag-name <path>\n {20,}reference model/,
    'an overlong flag puts its description on the next line',
  );
  const narrow = formatHelp(spec, 72);
  t.ok(
    narrow.split('\n').every((l) => l.length <= 72),
    'honours a narrower width',
  );
});

t.test('positional and no examples', async (t) => {
  const h = formatHelp({
    name: 'report',
    summary: 'summarize a run',
    flags: {},
    examples: [],
    positional: { name: 'run-dir', describe: 'the run directory' },
  });
  t.match(h, /^usage: rlhf report \[flags\] \[run-dir\]/);
  t.match(h, /\n {2}run-dir +the run directory\n/);
  t.notMatch(h, /examples:/);
});

t.test('wrap', async (t) => {
  t.same(wrap('a bb ccc dddd', 6), ['a bb', 'ccc', 'dddd']);
  t.same(wrap('abcdefgh', 3), ['abc', 'def', 'gh']);
  t.same(wrap('one\ntwo', 10), ['one', 'two']);
});

t.test(
  'every flag line of every command says its default (or that it is required or a switch); --lr names its schedule',
  async (t) => {
    const { formatHelp } = await import('../../lib/cli/framework/help.js');
    const specs = [
      ...Object.values(await import('../../lib/cli/commands/demo.js')),
      ...Object.values(await import('../../lib/cli/commands/sft.js')),
      ...Object.values(await import('../../lib/cli/commands/label.js')),
      ...Object.values(await import('../../lib/cli/commands/rm.js')),
      ...Object.values(await import('../../lib/cli/commands/prm.js')),
      ...Object.values(await import('../../lib/cli/commands/policy.js')),
      ...Object.values(await import('../../lib/cli/commands/dpo.js')),
      ...Object.values(await import('../../lib/cli/commands/generate.js')),
      ...Object.values(await import('../../lib/cli/commands/evaluate.js')),
      ...Object.values(await import('../../lib/cli/commands/info.js')),
      ...Object.values(await import('../../lib/cli/commands/report.js')),
    ].filter(
      (x): x is import('../../lib/cli/framework/args.js').CommandSpec =>
        typeof x === 'object' && x !== null && 'flags' in x,
    );
    t.equal(specs.length, 12, 'every command');
    for (const spec of specs) {
      const help = formatHelp(spec, 10000); // one line per flag
      for (const [key, flag] of Object.entries(spec.flags)) {
        const name = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
        const lines = help.split('\n');
        const at = lines.findIndex((l) => new RegExp(`^  --(\\[no-\\])?${name}\\b`).test(l));
        const end = lines.findIndex((l, i) => i > at && /^  (-|\S)/.test(l) && !/^   /.test(l));
        const line = at < 0 ? '' : lines.slice(at, end < 0 ? undefined : end).join(' '); // a long flag puts its description on the next line
        t.ok(line, `${spec.name} --${name} listed`);
        if (flag.type === 'bool' || flag.required) continue;
        t.match(line, /default/i, `${spec.name} --${name}: ${line.trim().slice(0, 80)}`);
      }
      if (spec.flags.lr)
        t.match(
          help,
          /--lr <number> .*(cosine decay|constant).*default: 1e-\d/,
          `${spec.name} --lr: schedule and default`,
        );
    }
    const { ppoSpec, grpoSpec } = await import('../../lib/cli/commands/policy.js');
    const { dpoSpec } = await import('../../lib/cli/commands/dpo.js');
    const { rmSpec } = await import('../../lib/cli/commands/rm.js');
    t.same(
      [
        rmSpec.flags.lr.default,
        dpoSpec.flags.lr.default,
        ppoSpec.flags.klCoef.default,
        grpoSpec.flags.klCoef.default,
        ppoSpec.flags.klEstimator.default,
        grpoSpec.flags.klEstimator.default,
      ],
      [1e-5, 1e-6, 0.05, 0, 'k1', 'k3'],
      "the trainers' own defaults",
    );
    const seeds = specs.filter((s) => s.flags.seed).map((s) => s.flags.seed.default);
    t.same([...new Set(seeds)], [0], 'one default seed everywhere');
  },
);
