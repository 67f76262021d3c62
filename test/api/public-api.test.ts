// The package's two entry points, as a user imports them (the package resolves itself by name
// through package.json "exports"): `rlhf` is the public API, `rlhf/internals` the building blocks
// behind it. Internals must not leak into the public entry point.
import t from 'tap';

const INTERNALS = [
  'gemmReference',
  'adamwStepReference',
  'parseGguf',
  'ggufTensorF32',
  'quantizeQ8_0',
  'dequantizeQ8_0',
  'pgNative',
  'TrainingRun',
  'RUN_OPTION_KEYS',
  'PolicyGradientLoop',
  'renderRunsHtml',
  'renderHtml',
  'renderMarkdown',
  'parseMetrics',
  'svgLineChart',
  'svgBarChart',
  'svgScatter',
  'svgWinTieLoss',
  'annotate',
  'makePrompt',
  'allPrompts',
  'splitPrompts',
  'demonstration',
  'idealResponse',
];

t.test('rlhf/internals holds the building blocks and rlhf does not', async (t) => {
  const pub = (await import('rlhf')) as Record<string, unknown>;
  const internals = (await import('rlhf/internals')) as Record<string, unknown>;
  t.same(Object.keys(internals).sort(), [...INTERNALS].sort());
  for (const name of INTERNALS) {
    t.type(internals[name], name === 'RUN_OPTION_KEYS' || name === 'pgNative' ? 'object' : 'function', name);
    t.notOk(name in pub, `${name} is not public`);
  }
});

t.test('the public entry point has what the README example uses', async (t) => {
  const pub = (await import('rlhf')) as Record<string, unknown>;
  for (const name of [
    'Model',
    'AdamW',
    'SFTTrainer',
    'PPOTrainer',
    'GroupTrainer',
    'PreferenceTrainer',
    'RewardTrainer',
    'ByteTokenizer',
    'tinyConfig',
    'generateRollout',
    'rewardFunction',
    'exportGguf',
    'initDistributed',
    'startServer',
    'runDemo',
    'writeRunReport',
    'RlhfError',
  ])
    t.type(pub[name], 'function', name);
});
