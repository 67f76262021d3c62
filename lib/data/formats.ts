/**
 * The record formats of TRL datasets, read from JSONL and checked field by field. Every error is an
 * `RlhfError(ErrorCode.FORMAT)` that names the place (`file:line`), the field, what was expected and
 * the record kind, e.g.
 *
 *   data/train.jsonl:12: expected "completion" to be a string ({prompt, completion} record), got number
 *
 * Formats (unknown extra keys are allowed everywhere; only prompt records keep them):
 * - SFT: `{prompt, completion}` (strings) or `{messages}` (a non-empty message list with at least
 *   one assistant message). TRL's conversational prompt-completion form, `{prompt: messages,
 *   completion: messages | string}`, becomes a `{messages}` record (prompt ++ completion; a string
 *   completion is one assistant message); its prompt must have no assistant turn, so that exactly
 *   the completion is trained on, as in TRL.
 * - Preference: `{prompt, chosen, rejected, margin?}`. `chosen`/`rejected` are strings, or (TRL's
 *   conversational form) message lists whose last message is the assistant reply: the reply's
 *   content is taken, and the messages before it (identical in chosen and rejected) continue the
 *   prompt. Without a `prompt` key (TRL's "implicit prompt" form) those shared messages are the
 *   prompt.
 * - Unpaired (KTO): `{prompt, completion, label}` (TRL's unpaired preference type): `label` is
 *   true for a desirable completion, false for an undesirable one; `completion` is a string or a
 *   message list ending with the assistant reply (the messages before it continue the prompt).
 * - Scored: `{prompt, responses, scores}`: at least two responses (strings, or message lists as
 *   for preferences), one finite score each.
 * - Prompt-only (RL): `{prompt, ...}`; extra fields (e.g. `answer` for rule-based rewards) are kept.
 *
 * A prompt is a string or a non-empty message list. A message is an object with `role` one of
 * {@link CHAT_ROLES} (a typo such as "assitant" is an error naming the field, `messages[1].role`,
 * with the nearest role) and `content` a string. Strings may be empty; every string a record
 * contributes (prompt, completion, content, chosen, rejected, responses) must be well-formed
 * UTF-16 (no lone surrogate from a `\ud800` escape), since it is encoded to UTF-8 for the tokenizer.
 * Records are validated completely when read, so every error names `file:line` and the field.
 */
import { ErrorCode, RlhfError } from '../errors.js';
import type { ChatMessage } from '../tokenizer/types.js';
import { readJsonl } from '../io/jsonl.js';
import { closest } from '../validate.js';

/** The chat roles a record's messages may have: those of the chat templates of the supported
 * families and of TRL/OpenAI conversational datasets. */
export const CHAT_ROLES = [
  'system',
  'developer',
  'user',
  'assistant',
  'tool',
  'ipython',
  'function',
  'observation',
] as const;

/** A prompt: plain text, or a conversation to be rendered with the chat template. */
export type Prompt = string | ChatMessage[];

/** A supervised fine-tuning example. */
export type SftRecord =
  { kind: 'completion'; prompt: string; completion: string } | { kind: 'messages'; messages: ChatMessage[] };

/** What trainers accept in memory: parsed {@link SftRecord}s or the JSONL shapes themselves. */
export type SftInput = SftRecord | { prompt: Prompt; completion: string | ChatMessage[] } | { messages: ChatMessage[] };

/** A preference pair; `margin` (optional) is TRL's reward-margin column. */
export interface PreferenceRecord {
  prompt: Prompt;
  chosen: string;
  rejected: string;
  margin?: number;
}

/** One completion judged desirable (`label: true`) or undesirable (`label: false`), TRL's unpaired preference row. */
export interface UnpairedRecord {
  prompt: Prompt;
  completion: string;
  label: boolean;
}

/** Several scored responses to one prompt: `responses.length === scores.length >= 2`, scores finite. */
export interface ScoredRecord {
  prompt: Prompt;
  responses: string[];
  scores: number[];
}

/** A prompt for RL rollouts; every other field of the record is kept as is. */
export interface PromptRecord {
  prompt: Prompt;
  [extra: string]: unknown;
}

const COMPLETION = '{prompt, completion}';
const MESSAGES = '{messages}';
const PREFERENCE = '{prompt, chosen, rejected}';
const SCORED = '{prompt, responses, scores}';
const UNPAIRED = '{prompt, completion, label}';
const PROMPT = '{prompt}';
const PROMPT_EXPECTED = 'a string or a non-empty list of {role, content} messages';

/** The JSON kind of a value, for "got ..." in messages. */
function kindOf(value: unknown): string {
  if (value === undefined) return 'nothing (the key is missing)';
  if (value === null) return 'null';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty array' : 'array';
  if (value === '') return 'an empty string';
  return typeof value;
}

function formatError(message: string): RlhfError {
  return new RlhfError(ErrorCode.FORMAT, message);
}

function expected(where: string, field: string, expectation: string, label: string, value: unknown): RlhfError {
  return formatError(`${where}: expected "${field}" to be ${expectation} (${label} record), got ${kindOf(value)}`);
}

function asObject(value: unknown, where: string, label: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw formatError(`${where}: expected a JSON object (${label} record), got ${kindOf(value)}`);
  return value as Record<string, unknown>;
}

/** A string field that can be encoded to UTF-8: no lone surrogate (with the u flag, a surrogate
 * class matches only unpaired ones). */
function wellFormed(value: string, field: string, where: string, label: string): string {
  const lone = /[\uD800-\uDFFF]/u.exec(value);
  if (lone)
    throw formatError(
      `${where}: expected "${field}" to be well-formed text (${label} record), got a lone surrogate \\u${lone[0].charCodeAt(0).toString(16)} at index ${lone.index}`,
    );
  return value;
}

function asString(obj: Record<string, unknown>, key: string, where: string, label: string): string {
  if (typeof obj[key] !== 'string') throw expected(where, key, 'a string', label, obj[key]);
  return wellFormed(obj[key] as string, key, where, label);
}

/** A non-empty list of messages; `field` is the path used in errors (`messages`, `prompt`, ...). */
function asMessages(value: unknown, field: string, where: string, label: string): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0)
    throw expected(where, field, 'a non-empty list of {role, content} messages', label, value);
  return value.map((m, i) => {
    const path = `${field}[${i}]`;
    if (m === null || typeof m !== 'object' || Array.isArray(m))
      throw expected(where, path, 'a {role, content} message object', label, m);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string' || role.length === 0)
      throw expected(where, `${path}.role`, 'a non-empty string', label, role);
    if (!(CHAT_ROLES as readonly string[]).includes(role)) {
      const near = closest(role, CHAT_ROLES);
      const got = JSON.stringify(role.length > 40 ? role.slice(0, 37) + '...' : role);
      throw formatError(
        `${where}: expected "${path}.role" to be one of ${CHAT_ROLES.join(', ')} (${label} record), got ${got}${near ? ` (did you mean "${near}"?)` : ''}`,
      );
    }
    if (typeof content !== 'string') throw expected(where, `${path}.content`, 'a string', label, content);
    return { ...(m as Record<string, unknown>), role, content: wellFormed(content, `${path}.content`, where, label) };
  });
}

function asPrompt(value: unknown, field: string, where: string, label: string): Prompt {
  if (typeof value === 'string') return wellFormed(value, field, where, label);
  if (Array.isArray(value) && value.length > 0) return asMessages(value, field, where, label);
  throw expected(where, field, PROMPT_EXPECTED, label, value);
}

/** A response: a string, or a message list ending with the assistant reply (split into context + reply). */
function asResponse(
  value: unknown,
  field: string,
  where: string,
  label: string,
): { context: ChatMessage[]; content: string } {
  if (typeof value === 'string') return { context: [], content: wellFormed(value, field, where, label) };
  if (!Array.isArray(value))
    throw expected(where, field, 'a string or a list of messages ending with the assistant reply', label, value);
  const messages = asMessages(value, field, where, label);
  const last = messages[messages.length - 1];
  if (last.role !== 'assistant')
    throw formatError(
      `${where}: expected the last message of "${field}" to be the assistant reply (${label} record), got role ${JSON.stringify(last.role)}`,
    );
  return { context: messages.slice(0, -1), content: last.content };
}

const sameMessages = (a: ChatMessage[], b: ChatMessage[]) =>
  a.length === b.length && a.every((m, i) => m.role === b[i].role && m.content === b[i].content);

/**
 * Resolves the prompt of a record whose responses may be conversations: the context messages
 * before each reply must agree, and continue the prompt (or are the prompt when it is absent).
 */
function resolvePrompt(
  obj: Record<string, unknown>,
  fields: string[],
  contexts: ChatMessage[][],
  where: string,
  label: string,
): Prompt {
  const context = contexts[0];
  contexts.forEach((c, i) => {
    if (!sameMessages(c, context))
      throw formatError(
        `${where}: expected "${fields[0]}" and "${fields[i]}" to have the same messages before the assistant reply (${label} record)`,
      );
  });
  if (obj.prompt === undefined) {
    if (context.length > 0) return context;
    throw expected(where, 'prompt', PROMPT_EXPECTED, label, undefined);
  }
  const prompt = asPrompt(obj.prompt, 'prompt', where, label);
  if (context.length === 0) return prompt;
  if (typeof prompt === 'string')
    throw formatError(
      `${where}: "prompt" is a string but "${fields[0]}" continues a conversation; give "prompt" as a message list (${label} record)`,
    );
  return [...prompt, ...context];
}

/**
 * Checks one SFT record: `{prompt, completion}` (strings), `{messages}`, or TRL's conversational
 * prompt-completion form (returned as `{kind: 'messages'}`). `where` is `file:line` for errors.
 */
export function parseSftRecord(value: unknown, where: string): SftRecord {
  const obj = asObject(value, where, `${COMPLETION} or ${MESSAGES}`);
  if (obj.messages !== undefined) {
    const messages = asMessages(obj.messages, 'messages', where, MESSAGES);
    if (!messages.some((m) => m.role === 'assistant'))
      throw formatError(
        `${where}: expected "messages" to contain an assistant message, the text trained on (${MESSAGES} record), got roles ${messages.map((m) => m.role).join(', ')}`,
      );
    return { kind: 'messages', messages };
  }
  if (obj.prompt === undefined && obj.completion === undefined) {
    const keys = Object.keys(obj)
      .map((k) => JSON.stringify(k))
      .join(', ');
    throw formatError(
      `${where}: expected a ${COMPLETION} or ${MESSAGES} record, got an object with ${keys ? `keys ${keys}` : 'no keys'}`,
    );
  }
  if (Array.isArray(obj.prompt)) {
    const label = 'conversational {prompt, completion}';
    const prompt = asMessages(obj.prompt, 'prompt', where, label);
    const i = prompt.findIndex((m) => m.role === 'assistant');
    if (i >= 0)
      throw formatError(
        `${where}: expected "prompt" to have no assistant message (${label} record; use {messages} to train on every assistant turn), got one at prompt[${i}]`,
      );
    const completion =
      typeof obj.completion === 'string'
        ? [{ role: 'assistant', content: wellFormed(obj.completion, 'completion', where, label) }]
        : asMessages(obj.completion, 'completion', where, label);
    return { kind: 'messages', messages: [...prompt, ...completion] };
  }
  return {
    kind: 'completion',
    prompt: asString(obj, 'prompt', where, COMPLETION),
    completion: asString(obj, 'completion', where, COMPLETION),
  };
}

/**
 * Checks one preference record `{prompt, chosen, rejected, margin?}`, including TRL's
 * conversational forms (see the module comment): chosen/rejected message lists contribute their
 * last (assistant) message's content; the messages before it must be the same in both and are
 * appended to the prompt, or are the prompt when the record has none.
 */
export function parsePreferenceRecord(value: unknown, where: string): PreferenceRecord {
  const obj = asObject(value, where, PREFERENCE);
  const chosen = asResponse(obj.chosen, 'chosen', where, PREFERENCE);
  const rejected = asResponse(obj.rejected, 'rejected', where, PREFERENCE);
  const prompt = resolvePrompt(obj, ['chosen', 'rejected'], [chosen.context, rejected.context], where, PREFERENCE);
  const rec: PreferenceRecord = { prompt, chosen: chosen.content, rejected: rejected.content };
  if (obj.margin !== undefined) {
    if (typeof obj.margin !== 'number' || !Number.isFinite(obj.margin))
      throw expected(where, 'margin', 'a finite number', PREFERENCE, obj.margin);
    rec.margin = obj.margin;
  }
  return rec;
}

/**
 * Checks one unpaired preference record `{prompt, completion, label}`: `label` a boolean, `completion`
 * a string or (conversational form) a message list whose last message is the assistant reply, the
 * messages before it continuing the prompt (or being the prompt when the record has none).
 */
export function parseUnpairedRecord(value: unknown, where: string): UnpairedRecord {
  const obj = asObject(value, where, UNPAIRED);
  const completion = asResponse(obj.completion, 'completion', where, UNPAIRED);
  if (typeof obj.label !== 'boolean')
    throw expected(where, 'label', 'true (desirable) or false (undesirable)', UNPAIRED, obj.label);
  const prompt = resolvePrompt(obj, ['completion'], [completion.context], where, UNPAIRED);
  return { prompt, completion: completion.content, label: obj.label };
}

/** Checks one `{prompt, responses, scores}` record: >= 2 responses, one finite score per response. */
export function parseScoredRecord(value: unknown, where: string): ScoredRecord {
  const obj = asObject(value, where, SCORED);
  if (!Array.isArray(obj.responses) || obj.responses.length < 2)
    throw expected(where, 'responses', 'a list of at least 2 responses', SCORED, obj.responses);
  const responses = obj.responses.map((r, i) => asResponse(r, `responses[${i}]`, where, SCORED));
  if (!Array.isArray(obj.scores)) throw expected(where, 'scores', 'a list of numbers', SCORED, obj.scores);
  if (obj.scores.length !== responses.length)
    throw formatError(
      `${where}: expected "scores" to have ${responses.length} entries, one per response (${SCORED} record), got ${obj.scores.length}`,
    );
  const scores = obj.scores.map((s, i) => {
    if (typeof s !== 'number' || !Number.isFinite(s))
      throw expected(where, `scores[${i}]`, 'a finite number', SCORED, s);
    return s;
  });
  const fields = responses.map((_, i) => `responses[${i}]`);
  const prompt = resolvePrompt(
    obj,
    fields,
    responses.map((r) => r.context),
    where,
    SCORED,
  );
  return { prompt, responses: responses.map((r) => r.content), scores };
}

/** Checks one prompt-only record; every other field is kept unchanged. */
export function parsePromptRecord(value: unknown, where: string): PromptRecord {
  const obj = asObject(value, where, PROMPT);
  return { ...obj, prompt: asPrompt(obj.prompt, 'prompt', where, PROMPT) };
}

async function loadFile<T>(path: string, parse: (value: unknown, where: string) => T): Promise<T[]> {
  const out: T[] = [];
  for await (const { value, line } of readJsonl(path)) out.push(parse(value, `${path}:${line}`));
  if (out.length === 0) throw formatError(`${path}: no records (the file is empty or has only blank lines)`);
  return out;
}

/** Parses in-memory SFT records (already-parsed ones pass through); errors name `where[i]`. */
export function toSftRecords(records: readonly SftInput[], where: string): SftRecord[] {
  return records.map((r, i) => (r && typeof r === 'object' && 'kind' in r ? r : parseSftRecord(r, `${where}[${i}]`)));
}

/** Reads and checks an SFT JSONL file ({@link parseSftRecord}); an empty file is a FORMAT error. */
export function loadSftFile(path: string): Promise<SftRecord[]> {
  return loadFile(path, parseSftRecord);
}

/** Reads and checks a preference JSONL file ({@link parsePreferenceRecord}); an empty file is a FORMAT error. */
export function loadPreferenceFile(path: string): Promise<PreferenceRecord[]> {
  return loadFile(path, parsePreferenceRecord);
}

/** Reads and checks an unpaired preference JSONL file ({@link parseUnpairedRecord}); an empty file is a FORMAT error. */
export function loadUnpairedFile(path: string): Promise<UnpairedRecord[]> {
  return loadFile(path, parseUnpairedRecord);
}

/** Reads and checks a scored-responses JSONL file ({@link parseScoredRecord}); an empty file is a FORMAT error. */
export function loadScoredFile(path: string): Promise<ScoredRecord[]> {
  return loadFile(path, parseScoredRecord);
}

/** Reads and checks a prompt JSONL file ({@link parsePromptRecord}); an empty file is a FORMAT error. */
export function loadPromptFile(path: string): Promise<PromptRecord[]> {
  return loadFile(path, parsePromptRecord);
}
