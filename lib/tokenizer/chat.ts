/**
 * Chat plumbing shared by the tokenizers: argument checks for messages, Jinja chat templates
 * (Hugging Face `chat_template` through @huggingface/jinja), and the assistant spans of a rendered
 * conversation, from which the SFT mask is built.
 */
import { Template } from '@huggingface/jinja';
import { ErrorCode, RlhfError } from '../errors.js';
import { checkObject, checkString, options, typeError } from '../validate.js';
import type { ChatMessage } from './types.js';

/** Validates a message list: an array of `{role: non-empty string, content: string}` objects. */
export function checkMessages(fn: string, messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages)) throw typeError(fn, 'messages', 'an array of {role, content} objects', messages);
  return messages.map((m, i) => {
    const o = checkObject(fn, `messages[${i}]`, m);
    return { ...o, role: checkString(fn, `messages[${i}].role`, o.role), content: checkString(fn, `messages[${i}].content`, o.content, false) };
  });
}

/** Reads `{addGenerationPrompt?: boolean}` (default false). */
export function readChatOptions(fn: string, value: unknown): { addGenerationPrompt: boolean } {
  const o = options(fn, 'options', value);
  o.known(['addGenerationPrompt']);
  return { addGenerationPrompt: o.bool('addGenerationPrompt', false) };
}

/**
 * A parsed Jinja chat template. `render` passes `messages`, `add_generation_prompt` and the
 * given special-token strings (`bos_token`, `eos_token`, ...) as variables, as transformers'
 * `apply_chat_template` does. A failure while rendering (including the template's own
 * `raise_exception`) is an RlhfError INVALID_ARGUMENT naming `fn`.
 */
export class ChatTemplate {
  readonly source: string;
  private readonly template: Template;

  /** Throws the parser's error for a template that does not parse. */
  constructor(source: string, private readonly variables: Record<string, string> = {}) {
    this.source = source;
    this.template = new Template(source);
  }

  render(fn: string, messages: ChatMessage[], addGenerationPrompt: boolean): string {
    try {
      return this.template.render({
        ...this.variables,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new RlhfError(ErrorCode.INVALID_ARGUMENT, `${fn}: the chat template failed to render the messages: ${why}`, { cause: err });
    }
  }
}

/** A [start, end) range of UTF-16 offsets into the rendered conversation. */
export interface Span {
  start: number;
  end: number;
}

/** The rendered conversation and where its assistant turns are. */
export interface RenderedChat {
  text: string;
  /** One span per assistant message, in order; each is its content plus its end-of-turn marker. */
  spans: Span[];
  /**
   * True when the conversation ends with an assistant turn that the template closes with no
   * end-of-turn marker (GLM-4 leaves it to the next turn's `<|user|>`): the caller appends the eos
   * id, masked, so that SFT teaches the model to stop.
   */
  appendEos: boolean;
}

/**
 * Finds the assistant spans of a templated conversation by rendering prefixes. For each assistant
 * message i, its span is the text between `render(messages[0..i), generation prompt)` and
 * `render(messages[0..i])`; both must be prefixes of the whole rendering (else an RlhfError
 * UNSUPPORTED: the template cannot be masked). The span is then fitted to its end-of-turn marker
 * (`endMarkers`, the stop tokens' strings):
 * - the span ends with a marker followed by whitespace only (ChatML's `<|im_end|>\n`): the
 *   whitespace is cut, it belongs to the next turn's prompt;
 * - no marker in the span but the text after it starts with one (GLM-4: the next `<|user|>`):
 *   the span is extended over that marker;
 * - neither, and the span ends the text: {@link RenderedChat.appendEos} is set.
 */
export function renderWithSpans(
  fn: string,
  messages: ChatMessage[],
  addGenerationPrompt: boolean,
  render: (messages: ChatMessage[], addGenerationPrompt: boolean) => string,
  endMarkers: readonly string[],
): RenderedChat {
  const text = render(messages, addGenerationPrompt);
  const markers = [...endMarkers].filter((m) => m.length > 0).sort((a, b) => b.length - a.length);
  const spans: Span[] = [];
  let appendEos = false;
  const unmaskable = (why: string) =>
    new RlhfError(ErrorCode.UNSUPPORTED, `${fn}: the chat template cannot be masked: ${why} (the template does not render prefixes of a conversation consistently)`);
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue;
    const before = render(messages.slice(0, i), true);
    const upto = render(messages.slice(0, i + 1), false);
    if (!upto.startsWith(before))
      throw unmaskable(`messages[0..${i}) rendered with the generation prompt is not a prefix of messages[0..${i}] rendered`);
    if (!text.startsWith(upto)) throw unmaskable(`messages[0..${i}] rendered is not a prefix of the whole conversation rendered`);
    const start = before.length;
    let end = upto.length;
    const trimmed = text.slice(start, end).trimEnd();
    if (markers.some((m) => trimmed.endsWith(m))) end = start + trimmed.length;
    else {
      const next = markers.find((m) => text.startsWith(m, end));
      if (next !== undefined) end += next.length;
      else if (end === text.length) appendEos = true;
    }
    spans.push({ start, end });
  }
  return { text, spans, appendEos };
}
