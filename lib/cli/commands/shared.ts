/**
 * What the commands share: common flags, loading a model with its tokenizer, resolving a reward
 * source from flags, and wiring a trainer to the progress display and Ctrl-C.
 */
import { NPROC_FLAG, tensorParallelMode } from './launch.js';
import type { ProcessGroup } from '../../distributed/index.js';
import { rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { pathExists as exists } from '../../io/atomic.js';
import { join } from 'node:path';
import { resolveCheckpoint } from '../../io/hub.js';
import { setThreads } from '../../engine/device.js';
import { configFromHF, tinyConfig, type ModelConfig } from '../../engine/config.js';
import type { LoraModuleName, LoraOptions } from '../../engine/lora.js';
import { Model } from '../../engine/model.js';
import { goldScore, makePrompt, type Format } from '../../demo/task.js';
import { RewardModel } from '../../rewards/reward-model.js';
import { ProcessRewardModel } from '../../rewards/process-reward-model.js';
import { rewardFunction, type RewardSource, type ScoreRequest } from '../../rewards/types.js';
import { ByteTokenizer, loadTokenizer, type Tokenizer } from '../../tokenizer/index.js';
import type { TrainerEmitter } from '../../train/events.js';
import { attachTracking, MlflowRun } from '../../track/index.js';
import { attachProgress, CliError, onInterrupt, type CommandContext, type FlagSpec } from '../framework/index.js';

export const COMMON_FLAGS: Record<string, FlagSpec> = {
  seed: { type: 'int', min: 0, default: 0, describe: 'random seed (data order, sampling, initialisation)' },
  threads: {
    type: 'int',
    min: 1,
    max: 1024,
    describe: 'CPU threads for the native engine (default: RLHF_THREADS or all cores)',
  },
};

/** For commands that load models: split each over K tensor-parallel ranks (threads, or processes under --nproc). */
export const MODEL_FLAGS: Record<string, FlagSpec> = {
  tp: {
    type: 'int',
    min: 1,
    max: 64,
    default: 1,
    placeholder: 'K',
    describe:
      'tensor parallelism: split every model over K ranks — K thread ranks of one process (each gets threads/K threads), or on the training commands with --nproc, K processes per model (see --tp-mode)',
  },
};
let tensorParallel = 1;
let tensorParallelGroup: 'threads' | 'mpi' = 'threads';
let gradientCheckpointing = false;
let lora: LoraOptions | undefined;

export const TRAIN_FLAGS: Record<string, FlagSpec> = {
  ...MODEL_FLAGS,
  ...NPROC_FLAG,
  output: {
    type: 'path',
    required: true,
    placeholder: 'dir',
    describe: 'output folder: checkpoints, metrics.jsonl, the final model',
  },
  resume: {
    type: 'bool',
    describe:
      'continue the run in --output from its newest verified checkpoint (exactly, with the same settings and data)',
  },
  overwrite: {
    type: 'bool',
    describe:
      "start a new run in an --output folder that holds another run, deleting that run's checkpoints, metrics and model",
  },
  allowResumeMismatch: {
    type: 'bool',
    describe: "with --resume: continue even though the settings or data differ from the run's (logged)",
  },
  allowNonFiniteResume: {
    type: 'bool',
    describe: 'with --resume: load a checkpoint holding NaN/Inf weights or optimizer state',
  },
  maxConsecutiveSkips: {
    type: 'int',
    min: 0,
    default: 5,
    placeholder: 'N',
    describe: 'stop with an error after N updates in a row skipped for non-finite loss or gradients (0: never)',
  },
  saveEvery: { type: 'int', min: 1, describe: 'write a checkpoint every N steps (default: only at the end)' },
  gradientCheckpointing: {
    type: 'bool',
    describe:
      "keep only each layer's input for backward and recompute the rest (far less activation memory, ~1 more forward of compute)",
  },
  loraRank: {
    type: 'int',
    min: 1,
    max: 4096,
    placeholder: 'r',
    describe: 'train LoRA adapters of rank r on a frozen base (saved in PEFT format under <output>/model/adapter)',
  },
  loraAlpha: { type: 'number', min: 0, describe: 'LoRA α (default 2·r): adapters scaled by α/r' },
  loraModules: {
    type: 'list',
    placeholder: 'q_proj,v_proj',
    describe: 'projections to adapt (default q_proj,v_proj; all-linear for every one)',
  },
  ...COMMON_FLAGS,
  logTo: {
    type: 'list',
    placeholder: 'tensorboard,mlflow',
    describe:
      'also log every metric (RL: histograms of rewards, advantages, KL and lengths, and sample tables) to TensorBoard event files in <output>/tensorboard and/or an MLflow tracking server; metrics.jsonl is always written',
  },
  trackingUri: {
    type: 'string',
    placeholder: 'url',
    describe: 'the MLflow server for --log-to mlflow, e.g. http://127.0.0.1:5000 (default: $MLFLOW_TRACKING_URI)',
  },
};

/** --lr with the trainer's default and its schedule named (the help shows both). */
export function lrFlag(lr: number, schedule: 'cosine' | 'constant'): FlagSpec {
  const describe =
    schedule === 'cosine'
      ? 'peak learning rate; linear warmup (--warmup-steps where offered), then cosine decay to 0.1× peak at the last step'
      : 'learning rate, constant (no warmup or decay)';
  return { type: 'number', min: 0, default: lr, describe };
}

/** --threads, --tp and --gradient-checkpointing: applied before any model is made. */
export function applyThreads(o: Record<string, unknown>): void {
  if (o.threads !== undefined) setThreads(o.threads as number);
  tensorParallel = (o.tp as number | undefined) ?? 1;
  tensorParallelGroup = tensorParallelMode(o) === 'processes' ? 'mpi' : 'threads';
  gradientCheckpointing = o.gradientCheckpointing === true;
  lora = loraFlags(o);
}

/** LoRA options from --lora-rank, --lora-alpha and --lora-modules (undefined without --lora-rank). */
export function loraFlags(o: Record<string, unknown>): LoraOptions | undefined {
  if ((o.loraAlpha !== undefined || o.loraModules !== undefined) && o.loraRank === undefined)
    throw new CliError('--lora-alpha and --lora-modules need --lora-rank');
  const modules = o.loraModules as string[] | undefined;
  return o.loraRank === undefined
    ? undefined
    : {
        rank: o.loraRank as number,
        ...(o.loraAlpha !== undefined ? { alpha: o.loraAlpha as number } : {}),
        ...(modules
          ? {
              modules:
                modules.length === 1 && modules[0] === 'all-linear' ? 'all-linear' : (modules as LoraModuleName[]),
            }
          : {}),
      };
}

/** The parsed config.json of a checkpoint folder (nothing else is read). */
export async function readModelConfig(dir: string, flag: string): Promise<ModelConfig> {
  dir = checkpointDir(dir, flag);
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new CliError(
      `${flag} ${dir}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  return configFromHF(JSON.parse(text), path);
}

/**
 * Loads a checkpoint directory and its tokenizer (one clear error when either is missing).
 * `trained`: the model the command trains, which gets the --lora-* adapters when they are given.
 */
export async function loadModel(
  dir: string,
  flag: string,
  architecture?: string,
  trained = false,
): Promise<{ model: Model; tokenizer: Tokenizer }> {
  dir = await requireModelDir(dir, flag);
  const model = await Model.load(dir, {
    ...(architecture ? { architecture } : {}),
    tensorParallel,
    tensorParallelGroup,
    ...(trained && lora ? { lora } : {}),
  });
  model.gradientCheckpointing = gradientCheckpointing;
  const tokenizer = await loadTokenizer(dir);
  return { model, tokenizer };
}

/** The config of a built-in preset (--init tiny|small), for the byte tokenizer. */
export function presetConfig(preset: string): ModelConfig {
  const tokenizer = new ByteTokenizer();
  const sizes: Record<string, { hidden: number; layers: number; ffn: number }> = {
    tiny: { hidden: 128, layers: 4, ffn: 341 },
    small: { hidden: 256, layers: 6, ffn: 688 },
  };
  const s = sizes[preset];
  if (!s) throw new CliError(`--init must be one of ${Object.keys(sizes).join(', ')}, got "${preset}"`);
  return configFromHF(
    tinyConfig({
      vocab: tokenizer.vocabSize,
      hidden: s.hidden,
      layers: s.layers,
      heads: 4,
      kvHeads: 2,
      ffn: s.ffn,
      maxPositions: 1024,
      eosTokenId: tokenizer.eosId,
      padTokenId: tokenizer.padId,
    }),
    `--init ${preset}`,
  );
}

/** A new model with the built-in byte tokenizer, for training from scratch. */
export async function initModel(preset: string, seed: number): Promise<{ model: Model; tokenizer: Tokenizer }> {
  if (lora)
    throw new CliError('--lora-rank needs a trained base (--model <dir>), not --init: LoRA freezes the base weights');
  const tokenizer = new ByteTokenizer();
  const model = await Model.create(presetConfig(preset), { seed, tensorParallel, tensorParallelGroup });
  model.gradientCheckpointing = gradientCheckpointing;
  return { model, tokenizer };
}

const SEQ_CLS: Record<string, string> = {
  llama: 'LlamaForSequenceClassification',
  qwen2: 'Qwen2ForSequenceClassification',
  glm: 'GlmForSequenceClassification',
  qwen3: 'Qwen3ForSequenceClassification',
  mistral: 'MistralForSequenceClassification',
  gemma2: 'Gemma2ForSequenceClassification',
  gemma3: 'Gemma3ForSequenceClassification',
  glm4: 'Glm4ForSequenceClassification',
};

/** Loads a checkpoint with a scalar head: as saved if it has one, else the causal LM with a new `score` head. */
export async function loadScalarHeadModel(
  path: string,
  flag: string,
  trained = false,
): Promise<{ model: Model; tokenizer: Tokenizer }> {
  path = await requireModelDir(path, flag);
  const { family, valueHead } = await readModelConfig(path, flag);
  return loadModel(path, flag, valueHead ? undefined : SEQ_CLS[family], trained);
}

/** A checkpoint folder, or a hub id resolved in the local Hugging Face cache (CliError when absent). */
function checkpointDir(dir: string, flag: string): string {
  try {
    return resolveCheckpoint(flag, dir);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
}

async function requireModelDir(dir: string, flag: string): Promise<string> {
  const found = checkpointDir(dir, flag);
  if (!(await exists(join(found, 'config.json'))))
    throw new CliError(`${flag} ${dir}: not a model directory (no config.json)`);
  return found;
}

/** A separator flag as typed on a command line: the escapes \n, \t and \\ become their characters. */
export function unescapeFlag(s: string): string {
  return s.replace(/\\(n|t|\\)/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : '\\'));
}

export const REWARD_FLAGS: Record<string, FlagSpec> = {
  rewardModel: { type: 'checkpoint', placeholder: 'dir', describe: 'score responses with this reward model' },
  processRewardModel: {
    type: 'checkpoint',
    placeholder: 'dir',
    describe: "score with a process reward model (rlhf prm): σ of each step's score, aggregated by --step-aggregate",
  },
  stepSeparator: {
    type: 'string',
    default: '\\n',
    placeholder: 'text',
    describe: 'the step separator the process reward model was trained with (\\n, \\t escapes)',
  },
  stepAggregate: {
    type: 'enum',
    values: ['min', 'last', 'mean'],
    default: 'min',
    describe: 'how step probabilities become one reward',
  },
  rewardRule: {
    type: 'string',
    placeholder: 'rule',
    describe:
      "score with a built-in rule: demo-gold (the demo task's gold function), regex:<pattern> (1 if it matches), shorter (−characters)",
  },
};

/** The demo task's prompt fields back from a record ({prompt, a, b, format}) or the prompt text. */
function demoPrompt(r: ScoreRequest): ReturnType<typeof makePrompt> {
  const rec = r.record as { a?: number; b?: number; format?: Format } | undefined;
  if (rec && typeof rec.a === 'number' && typeof rec.b === 'number' && rec.format)
    return makePrompt(rec.a, rec.b, rec.format);
  const text = typeof r.prompt === 'string' ? r.prompt : r.prompt.map((m) => m.content).join('\n');
  const m = /What is (\d+)\+(\d+)\? Answer (with a number|in words|in a sentence)/.exec(text);
  if (!m)
    throw new CliError(
      `--reward-rule demo-gold: prompt ${JSON.stringify(text.slice(0, 60))} is not a demo task prompt`,
    );
  return makePrompt(
    Number(m[1]),
    Number(m[2]),
    m[3] === 'with a number' ? 'number' : m[3] === 'in words' ? 'words' : 'sentence',
  );
}

export function ruleReward(spec: string): RewardSource {
  if (spec === 'demo-gold') return rewardFunction('demo-gold', (r) => goldScore(demoPrompt(r), r.response).total);
  if (spec === 'shorter') return rewardFunction('shorter', (r) => -r.response.length);
  if (spec.startsWith('regex:')) {
    let re: RegExp;
    try {
      re = new RegExp(spec.slice(6));
    } catch (err) {
      throw new CliError(`--reward-rule ${spec}: ${(err as Error).message}`);
    }
    return rewardFunction(spec, (r) => (re.test(r.response) ? 1 : 0));
  }
  throw new CliError(`--reward-rule must be demo-gold, shorter or regex:<pattern>, got "${spec}"`);
}

export async function resolveReward(o: Record<string, unknown>): Promise<{ reward: RewardSource; rm?: Model }> {
  if ([o.rewardModel, o.rewardRule, o.processRewardModel].filter(Boolean).length > 1)
    throw new CliError('give one of --reward-model, --process-reward-model or --reward-rule');
  if (o.processRewardModel) {
    const { model, tokenizer } = await loadModel(o.processRewardModel as string, '--process-reward-model');
    if (!model.config.valueHead)
      throw new CliError(
        `--process-reward-model ${o.processRewardModel}: a ${model.config.architecture} has no scalar head (train one with "rlhf prm")`,
      );
    return {
      reward: new ProcessRewardModel(model, tokenizer, {
        separator: unescapeFlag(o.stepSeparator as string),
        aggregate: o.stepAggregate as 'min' | 'last' | 'mean',
        batchSize: 32,
      }),
      rm: model,
    };
  }
  if (o.rewardModel) {
    const { model, tokenizer } = await loadModel(o.rewardModel as string, '--reward-model');
    if (!model.config.valueHead)
      throw new CliError(
        `--reward-model ${o.rewardModel}: a ${model.config.architecture} has no scalar head (train one with "rlhf rm")`,
      );
    return { reward: new RewardModel(model, tokenizer, { batchSize: 32 }), rm: model };
  }
  if (o.rewardRule) return { reward: ruleReward(o.rewardRule as string) };
  throw new CliError(
    'a reward source is needed: --reward-model <dir>, --process-reward-model <dir> or --reward-rule <rule>',
  );
}

/**
 * Progress display labelled with the command's name, Ctrl-C → requestStop (the trainer checkpoints
 * and returns), and the --log-to sinks. The returned function ends all of them; await it.
 */
export async function follow(
  trainer: TrainerEmitter & { requestStop(): void },
  ctx: CommandContext,
  metrics: string[],
  o: Record<string, unknown> = {},
  label?: string,
): Promise<(line?: string) => Promise<void>> {
  const p = attachProgress(trainer, ctx.stderr, { metrics, ...(label ? { label } : {}) });
  onInterrupt(() => trainer.requestStop());
  const sinks = (o.logTo as string[] | undefined) ?? [];
  for (const s of sinks)
    if (s !== 'tensorboard' && s !== 'mlflow')
      throw new CliError(`--log-to must list tensorboard and/or mlflow, got "${s}"`);
  let mlflow: MlflowRun | undefined;
  if (sinks.includes('mlflow')) {
    const uri = (o.trackingUri as string | undefined) ?? process.env.MLFLOW_TRACKING_URI;
    if (!uri) throw new CliError('--log-to mlflow needs --tracking-uri <url> (or MLFLOW_TRACKING_URI)');
    mlflow = await MlflowRun.create(uri, {
      runName: label,
      tags: { 'mlflow.source.name': `rlhf ${label ?? ''}`.trim() },
    });
    mlflow.params(
      Object.fromEntries(
        Object.entries(o).filter(([, v]) => ['string', 'number', 'boolean'].includes(typeof v)),
      ) as Record<string, string | number | boolean>,
    );
  } else if (o.trackingUri !== undefined) throw new CliError('--tracking-uri needs --log-to mlflow');
  if (typeof o.output === 'string' && !o.resume) rmSync(join(o.output, 'samples.jsonl'), { force: true }); // a fresh run: no samples of an earlier one
  const tracking = attachTracking(trainer, {
    ...(sinks.includes('tensorboard') ? { tensorboardDir: join(o.output as string, 'tensorboard') } : {}),
    ...(typeof o.output === 'string' ? { samplesFile: join(o.output, 'samples.jsonl') } : {}),
    mlflow,
    printSamples: (o.printSamples as number | undefined) ?? 0,
  });
  if (tracking.tensorboardPath)
    ctx.stderr.write(
      `tensorboard: ${tracking.tensorboardPath} (tensorboard --logdir ${join(o.output as string, 'tensorboard')})\n`,
    );
  if (mlflow) ctx.stderr.write(`mlflow: run ${mlflow.runId} at ${mlflow.uri}\n`);
  return async (line) => {
    await tracking.close();
    p.done(line);
  };
}

/** Keeps only the keys whose value is defined (so trainer defaults apply to unset flags). */
export function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The output folder's run settings (--output, --resume, --overwrite, ...) as trainer options. */
export function runFlags(o: Record<string, unknown>): {
  outputDir: string;
  resumeFrom?: string;
  overwrite: boolean;
  allowResumeMismatch: boolean;
  allowNonFiniteResume: boolean;
  maxConsecutiveSkips: number;
} {
  if (o.resume && o.overwrite)
    throw new CliError(
      'give --resume (continue the run in --output) or --overwrite (replace it with a new one), not both',
    );
  if (!o.resume && (o.allowResumeMismatch || o.allowNonFiniteResume))
    throw new CliError('--allow-resume-mismatch and --allow-non-finite-resume need --resume');
  return {
    outputDir: o.output as string,
    resumeFrom: o.resume ? 'latest' : undefined,
    overwrite: o.overwrite === true,
    allowResumeMismatch: o.allowResumeMismatch === true,
    allowNonFiniteResume: o.allowNonFiniteResume === true,
    maxConsecutiveSkips: o.maxConsecutiveSkips as number,
  };
}

/** The loop settings every training command passes through unchanged. */
export function loopFlags(
  o: Record<string, unknown>,
): { seqLen: number; batchSize: number; epochs: number; seed: number } & ReturnType<typeof runFlags> {
  return {
    seqLen: o.seqLen as number,
    batchSize: o.batchSize as number,
    epochs: o.epochs as number,
    seed: o.seed as number,
    ...runFlags(o),
  };
}

/**
 * After train(): unless stopped, the final model (with its tokenizer) goes to <output>/model.
 * Returns the exit code (130: stopped). Called on every rank of a job: world rank 0 writes, the
 * other ranks of its tensor-parallel group join the gathers (Model.save is collective there).
 */
export async function saveFinal(
  model: Model,
  tokenizer: Tokenizer,
  o: Record<string, unknown>,
  ctx: CommandContext,
  stopped: boolean | undefined,
  group?: ProcessGroup,
): Promise<number> {
  if (stopped) return 130;
  const dir = join(o.output as string, 'model');
  if (group && group.rank !== 0) return 0; // another data-parallel group holds the same weights
  await model.save(dir, { extraFiles: (d) => tokenizer.save(d) });
  if (!group || group.worldRank === 0) ctx.stdout.write(`model: ${dir}\n`);
  return 0;
}
