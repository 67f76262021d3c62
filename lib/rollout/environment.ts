/**
 * Multi-turn rollouts: the policy talks with an environment (a tool, a game, a user simulator).
 * One episode per row (prompt p, sample j → row p·n + j, as generateRollout):
 *
 *   reset     env.reset(record) → an optional first observation, appended to the prompt as a message
 *   turn t    the policy samples an assistant turn (up to sampling.maxNewTokens tokens, until a stop
 *             id) from the conversation so far; env.step(turn text) → {observation?, reward?, done}
 *   observe   unless done: the observation becomes a message of role env.role (default 'user'), and
 *             the tokens the chat template puts between the assistant turn and the next assistant
 *             turn (end of turn, the observation, the generation prompt) are appended
 *
 * The response of a row is every token after the prompt: the policy's sampled tokens, verbatim,
 * with their log π_old, and the environment's tokens with lossMask 0 and log-prob 0 — the trainers
 * train on lossMask = 1 tokens only. An episode ends when the environment says done, after maxTurns
 * policy turns (finishReason 'stop'), when a turn is cut by maxNewTokens, or when the next turn
 * would not fit in maxLength tokens (finishReason 'length'; no env.step for a cut turn).
 *
 * Reward: 'final' is the reward of the last step taken (0 when none), 'sum' the sum over turns.
 * turnRewards 'per-turn' (reward 'sum') also keeps where each step's reward belongs: the sample's
 * `turnRewards` holds it at the response index of the last token of the policy turn it follows (0
 * elsewhere). PPO places them there in its per-token rewards (GAE then credits each turn with what
 * came after it); the group methods, which have one advantage per episode, use their sum.
 * Determinism: turn t of row r samples from Philox stream base_r + t·2^44 (base_r as
 * generateRollout: streamBase + r or streams[r]), so a rollout is a function of (weights, prompts,
 * seed, streams, the environment's answers).
 */
import type { Model } from '../engine/model.js';
import { ErrorCode, RlhfError } from '../errors.js';
import type { PromptRecord } from '../data/index.js';
import type { ChatMessage, Tokenizer } from '../tokenizer/index.js';
import { options, typeError } from '../validate.js';
import { decodeResponse, type Rollout, type RolloutSample, type SamplingOptions } from './generate.js';

/** A multi-turn episode's sample: with turnRewards 'per-turn', each step's reward at its place. */
export interface EpisodeSample extends RolloutSample {
  /** per response token: a step's reward at the last token of the policy turn it follows, 0 elsewhere */
  turnRewards?: Float64Array;
}

/** What an environment answers to one assistant turn. */
export interface EnvironmentStep {
  /** the environment's reply, shown to the policy as the next message (ignored when done) */
  observation?: string;
  /** this turn's reward (a finite number) */
  reward?: number;
  /** true ends the episode */
  done: boolean;
}

/** An environment the policy acts in; one instance runs one episode at a time. */
export interface Environment {
  /** the chat role of observation messages (default 'user'; 'tool' where the chat template has it) */
  readonly role?: string;
  /** starts an episode for a prompt record; a non-empty return is a first observation message */
  reset(record: PromptRecord): string | undefined | Promise<string | undefined>;
  /** the policy's turn (its decoded text, without the stop token) → the environment's answer */
  step(action: string): EnvironmentStep | Promise<EnvironmentStep>;
}

export interface EnvironmentOptions {
  /** a new environment per episode (rows run side by side) */
  create: () => Environment;
  /** most policy turns per episode (default 4, at most 256) */
  maxTurns?: number;
  /** 'final' (default): the last step's reward; 'sum' (the default with turnRewards 'per-turn'): the sum of every step's reward */
  reward?: 'final' | 'sum';
  /** where the steps' rewards go: 'final' (default) the episode's reward at its last token; 'per-turn'
   * each at the last token of the policy turn it follows (PPO; the group methods sum them) */
  turnRewards?: 'final' | 'per-turn';
  /** most tokens of prompt + response (default the policy's maxPositions) */
  maxLength?: number;
}

/** Validated {@link EnvironmentOptions}. */
export interface EnvironmentConfig {
  create: () => Environment;
  maxTurns: number;
  reward: 'final' | 'sum';
  turnRewards: 'final' | 'per-turn';
  maxLength?: number;
}

const TURN_STREAM = 2 ** 44;

/** Reads {@link EnvironmentOptions} for `fn` (errors name options.environment.*). */
export function readEnvironmentOptions(fn: string, value: unknown): EnvironmentConfig {
  const o = options(fn, 'options.environment', value);
  o.known(['create', 'maxTurns', 'reward', 'turnRewards', 'maxLength']);
  if (typeof o.obj.create !== 'function')
    throw typeError(fn, 'options.environment.create', 'a function returning an Environment', o.obj.create);
  const turnRewards = o.oneOf('turnRewards', ['final', 'per-turn'] as const, 'final');
  const reward = o.oneOf('reward', ['final', 'sum'] as const, turnRewards === 'per-turn' ? 'sum' : 'final');
  if (turnRewards === 'per-turn' && reward !== 'sum')
    throw typeError(fn, 'options.environment.reward', "'sum' (or absent) with turnRewards 'per-turn'", reward);
  return {
    create: o.obj.create as () => Environment,
    maxTurns: o.int('maxTurns', { min: 1, max: 256 }, 4),
    reward,
    turnRewards,
    maxLength: o.has('maxLength') ? o.int('maxLength', { min: 2 }) : undefined,
  };
}

interface Episode {
  row: number;
  env: Environment;
  stream: number;
  prompt: ChatMessage[];
  promptIds: number[];
  ids: number[];
  logprobs: number[];
  mask: number[];
  turns: ChatMessage[];
  rewards: number[];
  /** response index of the last token of the policy turn each reward follows */
  rewardAt: number[];
  text: string;
  finish?: 'stop' | 'length';
}

/** Samples one episode per (prompt, sample) row; see the module comment. */
export async function multiTurnRollout(opts: {
  policy: Model;
  tokenizer: Tokenizer;
  prompts: PromptRecord[];
  samplesPerPrompt: number;
  sampling: SamplingOptions;
  seed: number;
  streamBase?: number;
  streams?: number[];
  environment: EnvironmentConfig;
}): Promise<Rollout> {
  const { policy, tokenizer: tok, prompts, samplesPerPrompt: n, sampling, environment: e } = opts;
  const maxLength = e.maxLength ?? policy.config.maxPositions;
  const episodes: Episode[] = [];
  for (let r = 0; r < prompts.length * n; r++) {
    const record = prompts[Math.floor(r / n)];
    const env = e.create();
    const first = await env.reset(record);
    if (first !== undefined && first !== null && typeof first !== 'string')
      throw envError(`reset() returned ${describe(first)}, expected a string or undefined`, record, r, n);
    const prompt: ChatMessage[] =
      typeof record.prompt === 'string' ? [{ role: 'user', content: record.prompt }] : [...record.prompt];
    if (first) prompt.push({ role: env.role ?? 'user', content: first });
    const promptIds = tok.encodePrompt(prompt);
    episodes.push({
      row: r,
      env,
      stream: opts.streams ? opts.streams[r] : (opts.streamBase ?? 0) + r,
      prompt,
      promptIds,
      ids: [...promptIds],
      logprobs: [],
      mask: [],
      turns: [],
      rewards: [],
      rewardAt: [],
      text: '',
    });
  }
  for (let t = 0; t < e.maxTurns; t++) {
    for (const ep of episodes)
      if (!ep.finish && ep.ids.length + sampling.maxNewTokens > maxLength) ep.finish = 'length';
    const active = episodes.filter((ep) => !ep.finish);
    if (!active.length) break;
    const out = await policy.generate({
      prompts: active.map((ep) => Int32Array.from(ep.ids)),
      maxNewTokens: sampling.maxNewTokens,
      temperature: sampling.temperature ?? 1,
      topP: sampling.topP ?? 1,
      topK: sampling.topK ?? 0,
      seed: opts.seed,
      streams: active.map((ep) => ep.stream + t * TURN_STREAM),
      stopTokens: tok.stopIds,
    });
    for (const [i, ep] of active.entries()) {
      const g = out[i];
      const stop = g.finishReason === 'stop';
      ep.ids.push(...g.tokens);
      ep.logprobs.push(...g.logprobs);
      for (let k = 0; k < g.tokens.length; k++) ep.mask.push(1);
      ep.text = decodeResponse(tok, stop ? g.tokens.subarray(0, g.tokens.length - 1) : g.tokens);
      ep.turns.push({ role: 'assistant', content: ep.text });
      if (!stop) {
        ep.finish = 'length';
        continue;
      }
      const s = await ep.env.step(ep.text);
      checkStep(s, prompts[Math.floor(ep.row / n)], ep.row, n);
      ep.rewards.push(s.reward ?? 0);
      ep.rewardAt.push(ep.ids.length - ep.promptIds.length - 1);
      if (s.done || t === e.maxTurns - 1) {
        ep.finish = 'stop';
        continue;
      }
      const observation: ChatMessage = { role: ep.env.role ?? 'user', content: s.observation ?? '' };
      const envIds = observationTokens(tok, [...ep.prompt, ...ep.turns], observation);
      ep.turns.push(observation);
      ep.ids.push(...envIds);
      for (let k = 0; k < envIds.length; k++) (ep.mask.push(0), ep.logprobs.push(0));
    }
  }
  const samples: EpisodeSample[] = episodes.map((ep) => ({
    promptIndex: Math.floor(ep.row / n),
    promptIds: Int32Array.from(ep.promptIds),
    responseIds: Int32Array.from(ep.ids.slice(ep.promptIds.length)),
    logprobs: Float32Array.from(ep.logprobs),
    text: ep.text,
    finishReason: ep.finish ?? 'stop',
    lossMask: Uint8Array.from(ep.mask),
    envReward: e.reward === 'sum' ? ep.rewards.reduce((a, b) => a + b, 0) : (ep.rewards.at(-1) ?? 0),
    turns: ep.turns,
    ...(e.turnRewards === 'per-turn' ? { turnRewards: placeRewards(ep) } : {}),
  }));
  return { prompts, samplesPerPrompt: n, samples };
}

/** An episode's step rewards at their response indices (one step per policy turn). */
function placeRewards(ep: Episode): Float64Array {
  const out = new Float64Array(ep.ids.length - ep.promptIds.length);
  ep.rewards.forEach((r, k) => (out[ep.rewardAt[k]] += r));
  return out;
}

/**
 * The tokens the chat template adds after an assistant turn to show `observation` and open the
 * next assistant turn: encodePrompt(conversation + observation) minus encodeChat(conversation),
 * which must be its prefix (templates that rewrite earlier turns cannot be continued this way).
 */
export function observationTokens(tok: Tokenizer, conversation: ChatMessage[], observation: ChatMessage): number[] {
  const base = tok.encodeChat(conversation).ids;
  const full = tok.encodePrompt([...conversation, observation]);
  if (full.length < base.length || base.some((id, i) => full[i] !== id))
    throw new RlhfError(
      ErrorCode.INVALID_ARGUMENT,
      'multiTurnRollout: the chat template renders the conversation differently once an observation follows it (it rewrites earlier turns), so the episode cannot be continued token by token',
    );
  return full.slice(base.length);
}

function checkStep(s: unknown, record: PromptRecord, row: number, n: number): asserts s is EnvironmentStep {
  const o = s as EnvironmentStep;
  if (s === null || typeof s !== 'object' || typeof o.done !== 'boolean')
    throw envError(`step() returned ${describe(s)}, expected {observation?, reward?, done: boolean}`, record, row, n);
  if (o.reward !== undefined && (typeof o.reward !== 'number' || !Number.isFinite(o.reward)))
    throw envError(`step() returned reward ${describe(o.reward)}, expected a finite number`, record, row, n);
  if (o.observation !== undefined && typeof o.observation !== 'string')
    throw envError(`step() returned observation ${describe(o.observation)}, expected a string`, record, row, n);
}

function envError(what: string, record: PromptRecord, row: number, n: number): RlhfError {
  const text = typeof record.prompt === 'string' ? record.prompt : (record.prompt.at(-1)?.content ?? '');
  return new RlhfError(
    ErrorCode.INVALID_ARGUMENT,
    `environment: ${what} (prompt ${Math.floor(row / n)} ${JSON.stringify(text.slice(0, 60))}, sample ${row % n})`,
  );
}

function describe(v: unknown): string {
  if (typeof v === 'string') return `a string ${JSON.stringify(v.slice(0, 40))}`;
  if (typeof v === 'number') return String(v);
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** Batch-layout mask of the rows' policy tokens (1 at targets the policy sampled; env tokens and padding 0). */
export function policyTokenMask(
  sb: { batch: number; seqLen: number; targets: Int32Array; responseStart: Int32Array; responseLength: Int32Array },
  samples: ReadonlyArray<{ lossMask?: Uint8Array }>,
): Float32Array {
  const mask = Float32Array.from(sb.targets, (t) => (t >= 0 ? 1 : 0));
  samples.forEach((s, b) => {
    if (s.lossMask) for (let i = 0; i < sb.responseLength[b]; i++) mask[sb.responseStart[b] + i] = s.lossMask[i];
  });
  return mask;
}
