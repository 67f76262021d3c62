/**
 * Pure parsers and small formulas of LongReward (docs/algorithms.md §5.3–5.4): rating extraction, statement
 * extraction, support verdicts, the faithfulness mean, the language heuristic, and the position
 * labels of completeness information blocks.
 */
import { checkInt, checkNumber, rangeError, typeError } from '../../validate.js';

/** The rating format: `[[7]]` or `[[7.5]]` (non-negative, no sign, no exponent). */
export const SCORE_PATTERN = /\[\[(\d+\.\d+|\d+)\]\]/;
const SCORE_GLOBAL = new RegExp(SCORE_PATTERN.source, 'g');

/**
 * The LAST `[[number]]` in a judge's reply (the rating comes after the analysis, and the analysis
 * may quote other bracketed numbers), or `undefined` when there is none (property 21).
 */
export function parseScore(text: string): number | undefined {
  if (typeof text !== 'string') throw typeError('parseScore', 'text', 'a string', text);
  let last: string | undefined;
  for (const m of text.matchAll(SCORE_GLOBAL)) last = m[1];
  return last === undefined ? undefined : Number(last);
}

/**
 * {@link parseScore} restricted to the 0..10 scale: a rating above 10 is treated as malformed
 * (`undefined`, so the judge is asked again). The official code accepts any number; this guard
 * keeps one runaway rating from dominating the 0..40 total.
 */
export function parseRating(text: string): number | undefined {
  const score = parseScore(text);
  return score !== undefined && score <= 10 ? score : undefined;
}

/**
 * The statements of an extractor reply: the trimmed, non-empty contents of every
 * `<statement>...</statement>` (across lines), in order.
 */
export function parseStatements(text: string): string[] {
  if (typeof text !== 'string') throw typeError('parseStatements', 'text', 'a string', text);
  const out: string[] = [];
  for (const m of text.matchAll(/<statement>([\s\S]*?)<\/statement>/g)) {
    const s = m[1].trim();
    if (s.length > 0) out.push(s);
  }
  return out;
}

/** A support verdict: fully supported 1, partially 0.5, not supported 0. */
export type SupportVerdict = 0 | 0.5 | 1;

/**
 * The verdict of a faithfulness reply, read from its LAST `[[...]]` made of letters, spaces and
 * slashes: 1 if it contains "fully", else 0.5 if it contains "partially", else 0 (case-insensitive;
 * `[[No support]]` and any other wording count as 0). `undefined` when the reply has no bracketed
 * verdict at all, which makes the pipeline ask again, as the official code does.
 *
 * As in the official code "fully" is tested first, so `[[Not fully supported]]` reads as 1; the
 * default prompts only offer the three canonical labels.
 */
export function parseSupportVerdict(text: string): SupportVerdict | undefined {
  if (typeof text !== 'string') throw typeError('parseSupportVerdict', 'text', 'a string', text);
  let last: string | undefined;
  for (const m of text.matchAll(/\[\[([ /a-zA-Z]+)\]\]/g)) last = m[1];
  if (last === undefined) return undefined;
  const v = last.toLowerCase();
  return v.includes('fully') ? 1 : v.includes('partially') ? 0.5 : 0;
}

/**
 * Faithfulness = 10 × the mean verdict; for n statements the value is 10·m/(2n) for some m in 0..2n
 * (property 20), computed as (10·Σv)/n so that it equals that fraction exactly.
 *
 * No statements: the official code never gets here (it retries the extractor, then fails and drops
 * the response). This returns `whenEmpty`, by default 10: an answer that makes no factual claim
 * about the document asserts nothing unsupported. Helpfulness and completeness still judge it.
 */
export function faithfulnessScore(verdicts: readonly number[], whenEmpty = 10): number {
  const fn = 'faithfulnessScore';
  if (!Array.isArray(verdicts)) throw typeError(fn, 'verdicts', 'an array of 0, 0.5 or 1', verdicts);
  checkNumber(fn, 'whenEmpty', whenEmpty, { min: 0, max: 10 });
  if (verdicts.length === 0) return whenEmpty;
  let sum = 0;
  verdicts.forEach((v, i) => {
    if (v !== 0 && v !== 0.5 && v !== 1) throw rangeError(fn, `verdicts[${i}]`, '0, 0.5 or 1', v);
    sum += v;
  });
  return (10 * sum) / verdicts.length;
}

/**
 * The prompt language for a text: 'en' when it has more than 4× as many Latin letters (A–Z, a–z)
 * as CJK ideographs (U+4E00–U+9FFF), else 'zh' (docs/algorithms.md §5.4; a text with neither is 'zh', as in
 * the official code, whose letter range also counts the six ASCII symbols between 'Z' and 'a').
 */
export function detectLanguage(text: string): 'en' | 'zh' {
  if (typeof text !== 'string') throw typeError('detectLanguage', 'text', 'a string', text);
  let latin = 0;
  let cjk = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) latin++;
    else if (c >= 0x4e00 && c <= 0x9fff) cjk++;
  }
  return latin > 4 * cjk ? 'en' : 'zh';
}

/** Rounds to the nearest integer, ties to even: Python's `round`, which the official labels use. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d !== 0.5) return d < 0.5 ? f : f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * The header of one completeness information block: the chunk's token range as whole percentages
 * of the document, `st = round(100·start/total)`, `ed = round(100·end/total)` (ties to even, as in
 * the official code). Chinese: `[文档{st}% - {ed}%部分的有关信息]` (the official label); English:
 * `[Relevant information from {st}% - {ed}% of the document]`.
 */
export function positionLabel(start: number, end: number, total: number, language: 'en' | 'zh' = 'zh'): string {
  const fn = 'positionLabel';
  checkInt(fn, 'total', total, { min: 1 });
  checkInt(fn, 'start', start, { min: 0, max: total });
  checkInt(fn, 'end', end, { min: start, max: total });
  const st = roundHalfEven((start / total) * 100);
  const ed = roundHalfEven((end / total) * 100);
  return language === 'en'
    ? `[Relevant information from ${st}% - ${ed}% of the document]`
    : `[文档${st}% - ${ed}%部分的有关信息]`;
}

/** The canonical reply of the information extractor for a chunk with nothing relevant. */
export const NO_RELEVANT_INFORMATION = 'No relevant information';

/**
 * An information-extraction reply: `NO_RELEVANT_INFORMATION` when the reply says so (in English,
 * case-insensitive, or "无相关信息"), else the trimmed reply; `undefined` for an empty reply (retried).
 */
export function parseInfo(text: string): string | undefined {
  if (typeof text !== 'string') throw typeError('parseInfo', 'text', 'a string', text);
  const s = text.trim();
  if (s.length === 0) return undefined;
  if (/no relevant information/i.test(s) || s.includes('无相关信息')) return NO_RELEVANT_INFORMATION;
  return s;
}
