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
    return {
      ...o,
      role: checkString(fn, `messages[${i}].role`, o.role),
      content: checkString(fn, `messages[${i}].content`, o.content, false),
    };
  });
}

/** Reads `{addGenerationPrompt?: boolean}` (default false). */
export function readChatOptions(fn: string, value: unknown): { addGenerationPrompt: boolean } {
  const o = options(fn, 'options', value);
  o.known(['addGenerationPrompt']);
  return { addGenerationPrompt: o.bool('addGenerationPrompt', false) };
}

/** Private-use characters that stand in for assistant content or `{% generation %}` bounds. */
const SENTINELS = ['\uE000', '\uE001', '\uE002', '\uE003', '\uE004', '\uE005'];

/** `{% generation %}` / `{% endgeneration %}` tags (with optional whitespace control). */
const GENERATION_TAG = /\{%(-?)\s*(end)?generation\s*(-?)%\}/g;

/**
 * A parsed Jinja chat template. `render` passes `messages`, `add_generation_prompt` and the
 * given special-token strings (`bos_token`, `eos_token`, ...) as variables, as transformers'
 * `apply_chat_template` does. A failure while rendering (including the template's own
 * `raise_exception`) is an RlhfError INVALID_ARGUMENT naming `fn`.
 *
 * Templates with `{% generation %}...{% endgeneration %}` blocks (transformers'
 * `return_assistant_tokens_mask`) render without them; {@link generationSpans} renders the same
 * text and reports where each block's output lies.
 */
export class ChatTemplate {
  readonly source: string;
  /** Whether the template marks assistant output with `{% generation %}` blocks. */
  readonly hasGenerationBlocks: boolean;
  private readonly template: Template;
  private readonly marked: Template | undefined;
  private readonly open: string;
  private readonly close: string;

  /** Throws the parser's error for a template that does not parse. */
  constructor(
    source: string,
    private readonly variables: Record<string, string> = {},
  ) {
    this.source = source;
    this.template = new Template(source);
    const free = SENTINELS.filter((c) => !source.includes(c));
    [this.open, this.close] = free;
    this.hasGenerationBlocks = GENERATION_TAG.test(source);
    GENERATION_TAG.lastIndex = 0;
    if (this.hasGenerationBlocks) {
      const marked = source.replace(
        GENERATION_TAG,
        (_, l: string, end: string | undefined, r: string) =>
          `{{${l} ${JSON.stringify(end ? this.close : this.open)} ${r}}}`,
      );
      this.marked = new Template(marked);
    }
  }

  render(fn: string, messages: ChatMessage[], addGenerationPrompt: boolean): string {
    return this.run(fn, this.template, messages, addGenerationPrompt);
  }

  /**
   * The rendering and the [start, end) spans of its `{% generation %}` blocks' output, in order
   * (undefined when the template has no such blocks). Throws RlhfError UNSUPPORTED when a message
   * holds one of the private-use characters used as markers or the blocks do not pair up.
   */
  generationSpans(
    fn: string,
    messages: ChatMessage[],
    addGenerationPrompt: boolean,
  ): { text: string; spans: Span[] } | undefined {
    if (this.marked === undefined) return undefined;
    checkNoSentinel(fn, messages, [this.open, this.close]);
    const raw = this.run(fn, this.marked, messages, addGenerationPrompt);
    const spans: Span[] = [];
    let text = '';
    let start = -1;
    for (const ch of raw) {
      if (ch === this.open || ch === this.close) {
        if ((ch === this.open) !== start < 0)
          throw new RlhfError(
            ErrorCode.UNSUPPORTED,
            `${fn}: the chat template's {% generation %} blocks are nested or unbalanced`,
          );
        if (ch === this.open) start = text.length;
        else (spans.push({ start, end: text.length }), (start = -1));
      } else text += ch;
    }
    if (start >= 0)
      throw new RlhfError(
        ErrorCode.UNSUPPORTED,
        `${fn}: the chat template's {% generation %} blocks are nested or unbalanced`,
      );
    return { text, spans: spans.filter((s) => s.end > s.start) };
  }

  private run(fn: string, template: Template, messages: ChatMessage[], addGenerationPrompt: boolean): string {
    try {
      return template.render({
        ...this.variables,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new RlhfError(
        ErrorCode.INVALID_ARGUMENT,
        `${fn}: the chat template failed to render the messages: ${why}`,
        { cause: err },
      );
    }
  }
}

function checkNoSentinel(fn: string, messages: ChatMessage[], sentinels: string[]): void {
  messages.forEach((m, i) => {
    if (sentinels.some((c) => m.content.includes(c)))
      throw new RlhfError(
        ErrorCode.UNSUPPORTED,
        `${fn}: messages[${i}].content holds a private-use character (U+E000..U+E005) that assistant masking reserves`,
      );
  });
}

/** A [start, end) range of UTF-16 offsets into the rendered conversation. */
export interface Span {
  start: number;
  end: number;
}

/** The rendered conversation and where its assistant turns are. */
export interface RenderedChat {
  text: string;
  /** One span per assistant message the template renders, in order. */
  spans: Span[];
}

/**
 * Finds the assistant spans of a templated conversation from one rendering of the whole
 * conversation, without assuming that the template renders prefixes of it consistently (Qwen3
 * drops earlier turns' thinking; other templates depend on the last message).
 *
 * For each assistant message i, the conversation is rendered again with message i's content
 * replaced by a private-use character; the text that differs between the two renderings (after
 * the longest common prefix, before the longest common suffix) is where message i's content is
 * rendered, with whatever the template derives from it (Qwen3's `<think>` block). The span is then
 * widened:
 * - back to the end of the generation prompt (the text `add_generation_prompt` appends to
 *   messages[0..i), e.g. `<|im_start|>assistant\n`) when it occurs between the previous span and
 *   the content, so that text the template puts between the prompt and the content (`<think>\n`,
 *   GLM-4's `\n`) is output the model must learn;
 * - over an end-of-turn marker (`endMarkers`, the stop tokens' strings) that follows it, after
 *   whitespace at most (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, Llama-2's ` </s>`, GLM-4's
 *   next `<|user|>`).
 * Nothing is added to the text: a final turn the template leaves open stays open.
 * A message the template does not render (no difference) has no span.
 */
export function renderWithSpans(
  fn: string,
  messages: ChatMessage[],
  addGenerationPrompt: boolean,
  render: (messages: ChatMessage[], addGenerationPrompt: boolean) => string,
  endMarkers: readonly string[],
): RenderedChat {
  const text = render(messages, addGenerationPrompt);
  const sentinel = SENTINELS[0];
  checkNoSentinel(fn, messages, [sentinel]);
  const markers = [...endMarkers].filter((m) => m.length > 0).sort((a, b) => b.length - a.length);
  const spans: Span[] = [];
  let floor = 0;
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue;
    const probe = render(
      messages.map((m, k) => (k === i ? { ...m, content: sentinel } : m)),
      addGenerationPrompt,
    );
    if (!probe.includes(sentinel)) continue; // the template does not render this message's content
    let p = 0;
    const limit = Math.min(text.length, probe.length);
    while (p < limit && text[p] === probe[p]) p++;
    let s = 0;
    while (s < limit - p && text[text.length - 1 - s] === probe[probe.length - 1 - s]) s++;
    let start = p;
    let end = text.length - s;
    const prompt = generationPrompt(messages.slice(0, i), render);
    if (prompt) {
      const at = start >= prompt.length ? text.lastIndexOf(prompt, start - prompt.length) : -1;
      if (at >= floor) start = at + prompt.length;
    }
    const trimmed = text.slice(start, end).trimEnd();
    if (markers.some((m) => trimmed.endsWith(m))) end = start + trimmed.length;
    else {
      const gap = /^[ \t\r\n]*/.exec(text.slice(end, end + 16))![0].length;
      const next = markers.find((m) => text.startsWith(m, end + gap));
      if (next !== undefined) end += gap + next.length;
    }
    if (end > start) (spans.push({ start, end }), (floor = end));
  }
  return { text, spans };
}

/** What `add_generation_prompt` appends to a rendering of `messages` ('' when unknown). */
function generationPrompt(
  messages: ChatMessage[],
  render: (messages: ChatMessage[], addGenerationPrompt: boolean) => string,
): string {
  let withPrompt: string, without: string;
  try {
    withPrompt = render(messages, true);
    without = render(messages, false);
  } catch {
    return ''; // a template that refuses this prefix (e.g. one that requires a final user turn)
  }
  return withPrompt.startsWith(without) ? withPrompt.slice(without.length) : '';
}
