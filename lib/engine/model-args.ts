/**
 * Model.forward's and Model.generate's arguments, checked and turned into what the native model
 * takes (native/napi/model_args.h reads them again). Every bad value throws the one argument-error
 * shape of lib/validate.ts naming the parameter ("Model.forward: expected batch.lengths[2] to be
 * ..."); a value the model cannot honour (targets on a model without an LM head, saveForBackward
 * on a withoutAdapters() view) is a TypeError saying why.
 */
import type { ModelConfig } from './config.js';
import type { ForwardBatch, GenerateOptions } from './model-types.js';
import { checkInt, checkInt32Array, options, rangeError, typeError } from '../validate.js';

const FORWARD_KEYS = [
  'tokens',
  'targets',
  'batch',
  'seqLen',
  'lengths',
  'positions',
  'segments',
  'entropy',
  'values',
  'logits',
  'temperature',
  'saveForBackward',
] as const;
const GENERATE_KEYS = [
  'prompts',
  'maxNewTokens',
  'temperature',
  'topK',
  'topP',
  'seed',
  'streamOffset',
  'streams',
  'stopTokens',
  'staticBatch',
  'kvDtype',
] as const;

/** What forward's and generate's checks need to know of the model they run on. */
export interface ArgsTarget {
  config: ModelConfig;
  /** false: frozen (saveForBackward defaults to false) */
  trainable: boolean;
  /** a withoutAdapters() view: inference only, run without the LoRA adapters */
  view: boolean;
}

/** NativeModel.forward's argument (native/napi/model_binding.cc) for `batch`. */
export function forwardArgs(batch: ForwardBatch, { config, trainable, view }: ArgsTarget) {
  const fn = 'Model.forward';
  const o = options(fn, 'batch', batch);
  o.known(FORWARD_KEYS);
  const B = o.int('batch', { min: 1 });
  const T = o.int('seqLen', { min: 1 });
  const N = B * T;
  const tokens = o.i32('tokens', { exact: N });
  const targets = o.has('targets') ? o.i32('targets', { exact: N }) : undefined;
  let lengths: Int32Array | undefined;
  if (o.has('lengths')) {
    const l = o.obj.lengths;
    lengths = Array.isArray(l) ? Int32Array.from(l as number[]) : checkInt32Array(fn, 'batch.lengths', l);
    if (lengths.length !== B) throw rangeError(fn, 'batch.lengths.length', `${B} (batch)`, lengths.length);
    lengths.forEach((v, i) => checkInt(fn, `batch.lengths[${i}]`, v, { min: 0, max: T }));
  }
  const positions = o.has('positions') ? o.i32('positions', { exact: N }) : undefined;
  const segments = o.has('segments') ? o.i32('segments', { exact: N }) : undefined;
  const entropy = o.bool('entropy', false);
  const values = o.bool('values', config.valueHead);
  const logits = o.bool('logits', false);
  const temperature = o.number('temperature', { gt: 0 }, 1);
  const saveForBackward = o.bool('saveForBackward', trainable && !view);
  if (view && saveForBackward)
    throw typeError(fn, 'batch.saveForBackward', 'false on a withoutAdapters() view (inference only)', true);
  if ((targets || entropy || logits) && !config.lmHead)
    throw typeError(fn, 'batch', `free of targets/entropy/logits: a ${config.architecture} has no LM head`, 'targets');
  if (values && !config.valueHead)
    throw typeError(fn, 'batch.values', `false: a ${config.architecture} has no value head`, true);
  return {
    batch: B,
    seqLen: T,
    tokens,
    targets,
    lengths,
    positions,
    segments,
    entropy,
    values,
    logits,
    temperature,
    saveForBackward,
    adapters: !view,
  };
}

/** NativeModel.generate's argument for `opts` (default stop tokens: the config's eos ids). */
export function generateArgs(opts: GenerateOptions, { config, view }: ArgsTarget) {
  const fn = 'Model.generate';
  const o = options(fn, 'options', opts);
  o.known(GENERATE_KEYS);
  if (!Array.isArray(o.obj.prompts) || o.obj.prompts.length === 0)
    throw typeError(fn, 'options.prompts', 'a non-empty array of token arrays', o.obj.prompts);
  const prompts = (o.obj.prompts as unknown[]).map((p, i) => {
    const a = Array.isArray(p) ? Int32Array.from(p as number[]) : checkInt32Array(fn, `options.prompts[${i}]`, p);
    if (a.length === 0) throw rangeError(fn, `options.prompts[${i}]`, 'non-empty', a);
    return a;
  });
  const maxNewTokens = o.int('maxNewTokens', { min: 1 });
  const temperature = o.number('temperature', { min: 0 }, 1);
  const topK = o.int('topK', { min: 0 }, 0);
  const topP = o.number('topP', { gt: 0, max: 1 }, 1);
  const seed = o.int('seed', { min: 0, max: Number.MAX_SAFE_INTEGER }, 0);
  const streamOffset = o.int('streamOffset', { min: 0, max: Number.MAX_SAFE_INTEGER }, 0);
  let streams: number[] | undefined;
  if (o.has('streams')) {
    if (o.has('streamOffset'))
      throw typeError(fn, 'options.streams', 'not given together with options.streamOffset', o.obj.streams);
    if (!Array.isArray(o.obj.streams) || o.obj.streams.length !== prompts.length)
      throw typeError(
        fn,
        'options.streams',
        `an array of ${prompts.length} stream ids (one per prompt)`,
        o.obj.streams,
      );
    streams = (o.obj.streams as unknown[]).map((s, i) =>
      checkInt(fn, `options.streams[${i}]`, s, { min: 0, max: Number.MAX_SAFE_INTEGER }),
    );
  }
  let stopTokens = config.eosTokenId;
  if (o.has('stopTokens')) {
    if (!Array.isArray(o.obj.stopTokens))
      throw typeError(fn, 'options.stopTokens', 'an array of token ids', o.obj.stopTokens);
    stopTokens = (o.obj.stopTokens as unknown[]).map((t, i) => checkInt(fn, `options.stopTokens[${i}]`, t, { min: 0 }));
  }
  const staticBatch = o.bool('staticBatch', false);
  const kvDtype = o.has('kvDtype') ? o.obj.kvDtype : 'f32';
  if (kvDtype !== 'f32' && kvDtype !== 'bf16') throw typeError(fn, 'options.kvDtype', "'f32' or 'bf16'", kvDtype);
  return {
    prompts,
    maxNewTokens,
    temperature,
    topK,
    topP,
    seed,
    streamOffset,
    streams,
    stopTokens: Int32Array.from(stopTokens),
    adapters: !view,
    staticBatch,
    kvBf16: kvDtype === 'bf16',
  };
}
