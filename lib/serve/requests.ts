/**
 * Validation of OpenAI-style request bodies. Every field is checked; an unknown field or an
 * unsupported value is a 400 error naming the field (`param`), in OpenAI's error shape.
 */
import type { ChatMessage } from '../tokenizer/index.js';

/** An error the HTTP layer sends as `{error: {message, type, param, code}}` with `status`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

export function badRequest(param: string, message: string, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

/** The sampling fields common to both endpoints, validated; maxTokens undefined = not given. */
export interface CommonFields {
  model: string;
  n: number;
  stream: boolean;
  includeUsage: boolean;
  maxTokens?: number;
  temperature: number;
  topP: number;
  topK: number;
  seed?: number;
  stop: string[];
}

export interface ChatRequest extends CommonFields {
  messages: ChatMessage[];
  logprobs: boolean;
}

export interface CompletionRequest extends CommonFields {
  /** one entry per prompt: text, or token ids */
  prompts: Array<string | number[]>;
  logprobs: boolean;
}

const COMMON_KEYS = [
  'model',
  'n',
  'stream',
  'stream_options',
  'max_tokens',
  'temperature',
  'top_p',
  'top_k',
  'seed',
  'stop',
  'user',
  'presence_penalty',
  'frequency_penalty',
  'logit_bias',
];
const CHAT_KEYS = [...COMMON_KEYS, 'messages', 'logprobs', 'top_logprobs', 'max_completion_tokens', 'response_format'];
const COMPLETION_KEYS = [...COMMON_KEYS, 'prompt', 'logprobs', 'echo', 'best_of', 'suffix'];
/** limits that keep one request from holding the server */
export const MAX_N = 16;
export const MAX_STOP = 4;

const describe = (v: unknown) =>
  v === null
    ? 'null'
    : Array.isArray(v)
      ? 'an array'
      : typeof v === 'string'
        ? `"${v.length > 40 ? v.slice(0, 40) + '…' : v}"`
        : typeof v === 'object'
          ? 'an object'
          : String(v);

function expect(param: string, what: string, v: unknown): ApiError {
  return badRequest(param, `${param}: expected ${what}, received ${describe(v)}`);
}

function body(value: unknown, known: string[]): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw badRequest('', 'the request body must be a JSON object');
  const obj = value as Record<string, unknown>;
  for (const k of Object.keys(obj))
    if (!known.includes(k)) throw badRequest(k, `Unrecognized request argument supplied: ${k}`);
  return obj;
}

const given = (o: Record<string, unknown>, k: string) => o[k] !== undefined && o[k] !== null;

function num(o: Record<string, unknown>, k: string, min: number, max: number, dflt: number, integer = false): number {
  if (!given(o, k)) return dflt;
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)))
    throw expect(k, integer ? 'an integer' : 'a number', v);
  if (v < min || v > max) throw badRequest(k, `${k}: expected a value in [${min}, ${max}], received ${v}`);
  return v;
}

function bool(o: Record<string, unknown>, k: string): boolean {
  if (!given(o, k)) return false;
  if (typeof o[k] !== 'boolean') throw expect(k, 'a boolean', o[k]);
  return o[k] as boolean;
}

function common(o: Record<string, unknown>, served: string[]): CommonFields {
  if (typeof o.model !== 'string' || !o.model) throw expect('model', 'a model name', o.model);
  if (!served.includes(o.model))
    throw new ApiError(
      404,
      `The model \`${o.model}\` does not exist (this server has ${served.map((m) => `\`${m}\``).join(', ')})`,
      'invalid_request_error',
      'model',
      'model_not_found',
    );
  const stream = bool(o, 'stream');
  let includeUsage = false;
  if (given(o, 'stream_options')) {
    const so = o.stream_options;
    if (!stream) throw badRequest('stream_options', 'stream_options: only allowed with stream: true');
    if (so === null || typeof so !== 'object' || Array.isArray(so)) throw expect('stream_options', 'an object', so);
    for (const k of Object.keys(so))
      if (k !== 'include_usage')
        throw badRequest(`stream_options.${k}`, `Unrecognized request argument supplied: stream_options.${k}`);
    includeUsage = bool(so as Record<string, unknown>, 'include_usage');
  }
  for (const k of ['presence_penalty', 'frequency_penalty'])
    if (given(o, k) && num(o, k, -2, 2, 0) !== 0) throw badRequest(k, `${k}: only 0 is supported by this server`);
  if (given(o, 'logit_bias')) {
    const lb = o.logit_bias;
    if (typeof lb !== 'object' || Array.isArray(lb)) throw expect('logit_bias', 'an object', lb);
    if (Object.keys(lb as object).length) throw badRequest('logit_bias', 'logit_bias: not supported by this server');
  }
  if (given(o, 'user') && typeof o.user !== 'string') throw expect('user', 'a string', o.user);
  let stop: string[] = [];
  if (given(o, 'stop')) {
    const s = o.stop;
    stop = typeof s === 'string' ? [s] : Array.isArray(s) ? s : [];
    if (!(typeof s === 'string' || Array.isArray(s)) || !stop.every((x) => typeof x === 'string' && x.length > 0))
      throw expect('stop', 'a non-empty string or an array of them', s);
    if (stop.length > MAX_STOP)
      throw badRequest('stop', `stop: at most ${MAX_STOP} sequences, received ${stop.length}`);
  }
  const seed = given(o, 'seed') ? num(o, 'seed', 0, Number.MAX_SAFE_INTEGER, 0, true) : undefined;
  const maxTokens = given(o, 'max_tokens') ? num(o, 'max_tokens', 1, 1 << 30, 0, true) : undefined;
  return {
    model: o.model,
    n: num(o, 'n', 1, MAX_N, 1, true),
    stream,
    includeUsage,
    maxTokens,
    temperature: num(o, 'temperature', 0, 2, 1),
    topP: num(o, 'top_p', Number.MIN_VALUE, 1, 1),
    topK: num(o, 'top_k', 0, 1 << 30, 0, true),
    ...(seed !== undefined ? { seed } : {}),
    stop,
  };
}

function messageContent(v: unknown, path: string): string {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) throw expect(path, 'a string or an array of text parts', v);
  return v
    .map((part, i) => {
      const p = part as { type?: unknown; text?: unknown } | null;
      if (p === null || typeof p !== 'object' || p.type !== 'text' || typeof p.text !== 'string')
        throw expect(`${path}[${i}]`, '{type: "text", text: string} (only text parts are supported)', part);
      return p.text;
    })
    .join('');
}

export function parseChatRequest(value: unknown, served: string[]): ChatRequest {
  const o = body(value, CHAT_KEYS);
  const c = common(o, served);
  if (given(o, 'max_completion_tokens')) {
    if (c.maxTokens !== undefined)
      throw badRequest('max_completion_tokens', 'give max_tokens or max_completion_tokens, not both');
    c.maxTokens = num(o, 'max_completion_tokens', 1, 1 << 30, 0, true);
  }
  if (!Array.isArray(o.messages) || o.messages.length === 0)
    throw expect('messages', 'a non-empty array of messages', o.messages);
  const messages = o.messages.map((m: unknown, i): ChatMessage => {
    const path = `messages[${i}]`;
    if (m === null || typeof m !== 'object' || Array.isArray(m)) throw expect(path, 'an object {role, content}', m);
    const msg = m as Record<string, unknown>;
    for (const k of Object.keys(msg))
      if (!['role', 'content', 'name'].includes(k))
        throw badRequest(`${path}.${k}`, `Unrecognized request argument supplied: ${path}.${k}`);
    if (!['system', 'developer', 'user', 'assistant'].includes(msg.role as string))
      throw expect(`${path}.role`, 'one of system, developer, user, assistant', msg.role);
    if (given(msg, 'name') && typeof msg.name !== 'string') throw expect(`${path}.name`, 'a string', msg.name);
    return {
      role: msg.role === 'developer' ? 'system' : (msg.role as string),
      content: messageContent(msg.content, `${path}.content`),
    };
  });
  const logprobs = bool(o, 'logprobs');
  if (given(o, 'top_logprobs')) {
    if (!logprobs) throw badRequest('top_logprobs', 'top_logprobs: requires logprobs: true');
    if (num(o, 'top_logprobs', 0, 20, 0, true) !== 0)
      throw badRequest(
        'top_logprobs',
        'top_logprobs: only 0 is supported by this server (the log-prob of each sampled token is returned)',
      );
  }
  if (given(o, 'response_format')) {
    const rf = o.response_format as { type?: unknown } | null;
    if (rf === null || typeof rf !== 'object' || rf.type !== 'text' || Object.keys(rf).length !== 1)
      throw badRequest('response_format', 'response_format: only {"type": "text"} is supported by this server');
  }
  return { ...c, messages, logprobs };
}

export function parseCompletionRequest(value: unknown, served: string[], vocabSize: number): CompletionRequest {
  const o = body(value, COMPLETION_KEYS);
  const c = common(o, served);
  const p = o.prompt;
  const isIds = (x: unknown): x is number[] =>
    Array.isArray(x) &&
    x.length > 0 &&
    x.every((t) => Number.isInteger(t) && (t as number) >= 0 && (t as number) < vocabSize);
  let prompts: Array<string | number[]>;
  if (typeof p === 'string') prompts = [p];
  else if (isIds(p)) prompts = [p];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string')) prompts = p as string[];
  else if (Array.isArray(p) && p.length > 0 && p.every(isIds)) prompts = p as number[][];
  else
    throw expect(
      'prompt',
      `a string, an array of strings, or token ids in [0, ${vocabSize}) (one array or an array of arrays)`,
      p,
    );
  if (prompts.length * c.n > MAX_N * 4)
    throw badRequest(
      'prompt',
      `prompt: at most ${MAX_N * 4} prompts × n per request, received ${prompts.length} × ${c.n}`,
    );
  if (prompts.some((x) => x.length === 0)) throw badRequest('prompt', 'prompt: must not be empty');
  let logprobs = false;
  if (given(o, 'logprobs')) {
    if (num(o, 'logprobs', 0, 5, 0, true) !== 0)
      throw badRequest(
        'logprobs',
        'logprobs: only 0 is supported by this server (the log-prob of each sampled token is returned; no alternatives)',
      );
    logprobs = true;
  }
  if (bool(o, 'echo')) throw badRequest('echo', 'echo: not supported by this server');
  if (given(o, 'suffix')) throw badRequest('suffix', 'suffix: not supported by this server');
  if (given(o, 'best_of') && num(o, 'best_of', 1, MAX_N, 1, true) !== c.n)
    throw badRequest('best_of', 'best_of: only best_of = n is supported by this server');
  return { ...c, prompts, logprobs };
}
