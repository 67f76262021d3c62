/**
 * The built-in task of `rlhf demo`, made in code: single-digit arithmetic questions with a format
 * request, e.g.
 *
 *   "What is 3+4? Answer with a number."   ideal: "7"
 *   "What is 3+4? Answer in words."        ideal: "seven"
 *   "What is 3+4? Answer in a sentence."   ideal: "3+4 is 7."
 *
 * A hidden gold function stands in for human preferences. It values several things at once:
 *   correct answer       +3 (a wrong number −1, no number 0; restating the question with other
 *                        operands, as in "0+0 is 3." for 3+0, is a wrong answer too)
 *   requested format     +1 (digits / words / a sentence ending in "." that restates "a+b")
 *   concise              −0.1 per character beyond the ideal answer's length (at most −2)
 *   no repetition        −1 when a word is repeated back to back ("7 7")
 *   no rambling          −1 when filler appears ("um", "let me think", "well,", "i guess", "hmm")
 * The simulated annotator prefers the higher gold score but flips its label with probability
 * `noise` (default 0.1) and picks at random when the scores differ by less than 0.05, like
 * annotators who disagree with themselves. The gold function (noise-free) is also the judge of
 * the final evaluation.
 *
 * SFT demonstrations are deliberately imperfect: by default only 40% are ideal; the rest carry one
 * or two flaws (filler, repetition, wrong format, verbosity, and 3% a wrong answer), so a model
 * that imitates them inherits the flaws and alignment has room to help. (Sampling at temperature 1
 * amplifies the wrong answers several-fold; at 10% wrong demonstrations a third of the sampled
 * pairs would hinge on an arithmetic check too fine for the tiny reward model.)
 */
import type { ChatMessage } from '../tokenizer/index.js';

export type Format = 'number' | 'words' | 'sentence';
export const FORMATS: readonly Format[] = ['number', 'words', 'sentence'];
const INSTRUCTION: Record<Format, string> = {
  number: 'Answer with a number.',
  words: 'Answer in words.',
  sentence: 'Answer in a sentence.',
};
export const NUMBER_WORDS = [
  'zero',
  'one',
  'two',
  'three',
  'four',
  'five',
  'six',
  'seven',
  'eight',
  'nine',
  'ten',
  'eleven',
  'twelve',
  'thirteen',
  'fourteen',
  'fifteen',
  'sixteen',
  'seventeen',
  'eighteen',
];
const FILLERS = ['um', 'let me think', 'well,', 'i guess', 'hmm'];

export interface TaskPrompt {
  a: number;
  b: number;
  format: Format;
  /** the user message */
  text: string;
  messages: ChatMessage[];
}

/** Seeded uniform [0, 1) (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function makePrompt(a: number, b: number, format: Format): TaskPrompt {
  const text = `What is ${a}+${b}? ${INSTRUCTION[format]}`;
  return { a, b, format, text, messages: [{ role: 'user', content: text }] };
}

/** Every (a, b, format) combination with operands 0..maxOperand: (maxOperand + 1)² × 3 prompts. */
export function allPrompts(maxOperand = 9): TaskPrompt[] {
  const out: TaskPrompt[] = [];
  for (let a = 0; a <= maxOperand; a++)
    for (let b = 0; b <= maxOperand; b++) for (const f of FORMATS) out.push(makePrompt(a, b, f));
  return out;
}

/** Splits the prompts into train / eval sets (seeded, disjoint). */
export function splitPrompts(
  seed: number,
  evalFraction = 0.2,
  maxOperand = 9,
): { train: TaskPrompt[]; eval: TaskPrompt[] } {
  const all = allPrompts(maxOperand),
    r = rng(seed);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  const n = Math.round(all.length * evalFraction);
  return { eval: all.slice(0, n), train: all.slice(n) };
}

export function idealResponse(p: TaskPrompt): string {
  const s = p.a + p.b;
  if (p.format === 'number') return String(s);
  if (p.format === 'words') return NUMBER_WORDS[s];
  return `${p.a}+${p.b} is ${s}.`;
}

/** A demonstration: ideal with probability `quality`, else with one or two seeded flaws. */
export function demonstration(p: TaskPrompt, r: () => number, quality = 0.4): string {
  if (r() < quality) return idealResponse(p);
  let answer = p.a + p.b;
  if (r() < 0.03) answer = (answer + 1 + Math.floor(r() * 3)) % 19; // a wrong answer
  let format = p.format;
  const flaws = 1 + (r() < 0.3 ? 1 : 0);
  let text = render(p, answer, format);
  for (let k = 0; k < flaws; k++) {
    const kind = Math.floor(r() * 4);
    if (kind === 0)
      text = `${FILLERS[Math.floor(r() * FILLERS.length)]} ${text}`; // rambling
    else if (kind === 1)
      text = `${text} ${text.split(' ').at(-1)}`; // repetition
    else if (kind === 2) {
      format = FORMATS[(FORMATS.indexOf(format) + 1 + Math.floor(r() * 2)) % 3]; // wrong format
      text = render(p, answer, format);
    } else text = `${text} I hope that helps you today`; // verbose
  }
  return text;
}

function render(p: TaskPrompt, answer: number, format: Format): string {
  if (format === 'number') return String(answer);
  if (format === 'words') return NUMBER_WORDS[answer] ?? String(answer);
  return `${p.a}+${p.b} is ${answer}.`;
}

/** The number a response states as its answer (the last number, in digits or words), if any. */
export function statedAnswer(response: string): number | undefined {
  const tokens = response.toLowerCase().match(/[a-z]+|\d+/g) ?? [];
  for (let i = tokens.length - 1; i >= 0; i--) {
    const t = tokens[i];
    if (/^\d+$/.test(t)) return Number(t);
    const w = NUMBER_WORDS.indexOf(t);
    if (w >= 0) return w;
  }
  return undefined;
}

/** Every sum written as "x+y" (digits, spaces allowed), in order: a sentence answer restates the question this way. */
export function statedOperands(response: string): Array<[number, number]> {
  return [...response.matchAll(/(\d+)\s*\+\s*(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
}

export interface GoldBreakdown {
  total: number;
  correct: number;
  format: number;
  concise: number;
  repetition: number;
  rambling: number;
}

/** The hidden gold preference function (see the file header). */
export function goldScore(p: TaskPrompt, response: string): GoldBreakdown {
  const r = response.trim();
  const lower = r.toLowerCase();
  const stated = statedAnswer(r);
  const operands = statedOperands(r);
  const operandsRight = operands.every(([x, y]) => (x === p.a && y === p.b) || (x === p.b && y === p.a));
  const correct = stated === undefined ? 0 : stated === p.a + p.b && operandsRight ? 3 : -1;
  let format = 0;
  if (p.format === 'number' && /^\d+$/.test(r)) format = 1;
  if (p.format === 'words' && /^[a-z]+$/.test(lower) && NUMBER_WORDS.includes(lower)) format = 1;
  if (
    p.format === 'sentence' &&
    /^[^.]*\d[^.]*\.$/.test(r) &&
    r.split(' ').length >= 3 &&
    operands.length > 0 &&
    operandsRight
  )
    format = 1;
  const concise = -Math.min(2, 0.1 * Math.max(0, r.length - idealResponse(p).length));
  const words = lower.split(/\s+/).filter(Boolean);
  const repetition = words.some(
    (w, i) => i > 0 && w.replace(/\W/g, '') === words[i - 1].replace(/\W/g, '') && w.replace(/\W/g, '') !== '',
  )
    ? -1
    : 0;
  const rambling = FILLERS.some((f) => lower.includes(f)) ? -1 : 0;
  return { total: correct + format + concise + repetition + rambling, correct, format, concise, repetition, rambling };
}

/**
 * The simulated annotator: true when it prefers response a. Flips with probability `noise`;
 * near-ties (|Δ| < 0.05) are a coin toss.
 */
export function annotate(p: TaskPrompt, a: string, b: string, r: () => number, noise = 0.1): boolean {
  const d = goldScore(p, a).total - goldScore(p, b).total;
  const prefersA = Math.abs(d) < 0.05 ? r() < 0.5 : d > 0;
  return r() < noise ? !prefersA : prefersA;
}
