/**
 * Records -> token ids + a loss mask. The mask convention is the one the batchers turn into
 * next-token targets: `lossMask[i] = 1` means token i is a training target, predicted from the
 * tokens before it; `lossMask[0]` is always 0 (nothing predicts the first token).
 *
 * Text is encoded with `tok.encode` (no special tokens are added and special-token strings in user
 * text stay plain text); conversations go through the tokenizer's chat template (`encodeChat`,
 * `encodePrompt`). Prompt and response are encoded separately and concatenated, as TRL does, so
 * the prompt/response boundary is exact for any tokenizer.
 *
 * Truncation keeps the start (`maxLength` first tokens): a response cut short loses its eos, so the
 * model is not taught to stop mid-sentence.
 */
import { checkObject, options, rangeError, typeError } from '../validate.js';
import { RlhfError } from '../errors.js';
import type { ChatMessage, Tokenizer } from '../tokenizer/types.js';
import type { Prompt, SftRecord } from './formats.js';

/** Token ids and the per-token training mask (same length). */
export interface TokenizedExample {
  ids: Int32Array;
  /** 1: token i is a target (predicted from tokens 0..i−1); index 0 is always 0. */
  lossMask: Uint8Array;
}

function checkTokenizer(fn: string, tok: unknown): Tokenizer {
  const t = checkObject(fn, 'tok', tok);
  if (typeof t.encode !== 'function' || typeof t.encodeChat !== 'function' || typeof t.encodePrompt !== 'function')
    throw typeError(fn, 'tok', 'a Tokenizer', tok);
  return tok as Tokenizer;
}

/** Builds the example from parts, truncating to `maxLength` and zeroing `lossMask[0]`. */
function build(
  ids: number[],
  mask: ArrayLike<number>,
  maxLength: number | undefined,
): TokenizedExample & { truncated: boolean } {
  const truncated = maxLength !== undefined && ids.length > maxLength;
  const n = truncated ? maxLength : ids.length;
  const out = { ids: new Int32Array(n), lossMask: new Uint8Array(n), truncated };
  for (let i = 0; i < n; i++) {
    out.ids[i] = ids[i];
    out.lossMask[i] = i > 0 && mask[i] ? 1 : 0;
  }
  return out;
}

function readMaxLength(o: ReturnType<typeof options>): number | undefined {
  return o.has('maxLength') ? o.int('maxLength', { min: 1 }) : undefined;
}

/**
 * Tokenizes an SFT record.
 * - `{prompt, completion}`: ids = encode(prompt) ++ encode(completion) ++ [eosId]; loss on the
 *   completion tokens and the eos, not on the prompt.
 * - `{messages}`: `tok.encodeChat(messages)`; loss where `assistantMask` is 1 (assistant contents and
 *   their end-of-turn markers).
 * With `maxLength`, the first `maxLength` tokens are kept and `truncated` says whether any were cut.
 */
export function tokenizeSft(
  tok: Tokenizer,
  rec: SftRecord,
  opts?: { maxLength?: number },
): TokenizedExample & { truncated: boolean } {
  const fn = 'tokenizeSft';
  checkTokenizer(fn, tok);
  const o = options(fn, 'options', opts);
  o.known(['maxLength']);
  const maxLength = readMaxLength(o);
  const r = checkObject(fn, 'rec', rec);
  if (r.kind === 'messages') {
    const { ids, assistantMask } = tok.encodeChat((rec as Extract<SftRecord, { kind: 'messages' }>).messages);
    return build(ids, assistantMask, maxLength);
  }
  if (r.kind !== 'completion')
    throw typeError(fn, 'rec.kind', '"completion" or "messages" (an SftRecord from parseSftRecord)', r.kind);
  const { prompt, completion } = rec as Extract<SftRecord, { kind: 'completion' }>;
  const p = tok.encode(prompt);
  const c = tok.encode(completion);
  const ids = [...p, ...c, tok.eosId];
  const mask = new Uint8Array(ids.length).fill(1, p.length);
  return build(ids, mask, maxLength);
}

/** Prompt ids for generation: a string prompt is `tok.encode(prompt)` (no eos); a message prompt is `tok.encodePrompt(messages)` (ends with the generation prompt). */
export function encodePrompt(tok: Tokenizer, prompt: Prompt): number[] {
  const fn = 'encodePrompt';
  checkTokenizer(fn, tok);
  if (typeof prompt === 'string') return tok.encode(prompt);
  if (Array.isArray(prompt)) return tok.encodePrompt(prompt);
  throw typeError(fn, 'prompt', 'a string or a list of messages', prompt);
}

/**
 * A prompt and one response as a training example (reward models, DPO, rollouts):
 * ids = encodePrompt(prompt) ++ response ids; loss on the response ids. `promptLength` is the number
 * of prompt tokens in `ids` (after truncation: at most `maxLength`); the response starts there.
 * - A string prompt: response ids = encode(response) ++ [eosId if addEos (default true)].
 * - A message prompt: the response is what the chat template renders for it as the final assistant
 *   turn, i.e. the assistant span of `encodeChat([...prompt, {role: 'assistant', content: response}])`
 *   (what SFT on the same conversation trains on): Qwen3's empty `<think>\n\n</think>\n\n` block,
 *   a template's trimming, and its end-of-turn marker included. With addEos false a final stop id is
 *   dropped; with addEos true eosId is appended when the span does not end with a stop id. A template
 *   that does not render the turn (or cannot be masked) falls back to the string form.
 */
export function tokenizePromptResponse(
  tok: Tokenizer,
  prompt: Prompt,
  response: string,
  opts?: { addEos?: boolean; maxLength?: number },
): TokenizedExample & { promptLength: number; truncated: boolean } {
  const fn = 'tokenizePromptResponse';
  checkTokenizer(fn, tok);
  const o = options(fn, 'options', opts);
  o.known(['addEos', 'maxLength']);
  const addEos = o.bool('addEos', true);
  const maxLength = readMaxLength(o);
  if (typeof response !== 'string') throw typeError(fn, 'response', 'a string', response);
  const p = encodePrompt(tok, prompt);
  const ids = [...p, ...((Array.isArray(prompt) && templatedResponse(tok, prompt, response, addEos)) || plain())];
  const mask = new Uint8Array(ids.length).fill(1, p.length);
  const ex = build(ids, mask, maxLength);
  return { ...ex, promptLength: Math.min(p.length, ex.ids.length) };

  function plain(): number[] {
    const r = tok.encode(response);
    if (addEos) r.push(tok.eosId);
    return r;
  }
}

/** The final assistant turn's ids as the template renders `response` after `prompt`; null when it has no span. */
function templatedResponse(tok: Tokenizer, prompt: ChatMessage[], response: string, addEos: boolean): number[] | null {
  let chat;
  try {
    chat = tok.encodeChat([...prompt, { role: 'assistant', content: response }]);
  } catch (e) {
    if (e instanceof RlhfError) return null; // a template that cannot be masked: the string form
    throw e;
  }
  const m = chat.assistantMask;
  let end = m.length;
  while (end > 0 && !m[end - 1]) end--;
  let start = end;
  while (start > 0 && m[start - 1]) start--;
  if (end === start) return null;
  const ids = chat.ids.slice(start, end);
  const stops = new Set(tok.stopIds);
  const closed = stops.has(ids[ids.length - 1]);
  if (closed && !addEos) ids.pop();
  else if (!closed && addEos) ids.push(tok.eosId);
  return ids;
}

/** Asserts `ex` is a well-formed example (used by the batchers); returns its length. */
export function checkExample(fn: string, path: string, ex: unknown): number {
  const e = checkObject(fn, path, ex);
  if (!(e.ids instanceof Int32Array)) throw typeError(fn, `${path}.ids`, 'an Int32Array', e.ids);
  if (!(e.lossMask instanceof Uint8Array)) throw typeError(fn, `${path}.lossMask`, 'a Uint8Array', e.lossMask);
  if (e.lossMask.length !== e.ids.length)
    throw rangeError(fn, `${path}.lossMask.length`, `ids.length (${e.ids.length})`, e.lossMask.length);
  return e.ids.length;
}
