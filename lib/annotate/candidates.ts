/** Reading the candidates file: one pair of responses per line, to be labelled. */
import { readJsonlFile } from '../data/index.js';
import { ErrorCode, RlhfError } from '../errors.js';
import type { Candidate } from './db.js';

/**
 * Each line is `{"prompt": string | [{role, content}], "responses": [a, b]}` (as `rlhf label`
 * writes candidates) or `{"prompt", "chosen", "rejected"}` (an already-labelled pair to relabel;
 * the order is not shown to annotators). The two responses must differ.
 */
export async function loadCandidates(path: string): Promise<Candidate[]> {
  const lines = await readJsonlFile(path);
  if (lines.length === 0) throw new RlhfError(ErrorCode.FORMAT, `${path}: no candidates`);
  return lines.map(({ value, line }) => {
    const where = `${path}:${line}`;
    const bad = (why: string) => new RlhfError(ErrorCode.FORMAT, `${where}: ${why}`);
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      throw bad('expected a JSON object {prompt, responses: [a, b]}');
    const o = value as Record<string, unknown>;
    const prompt = o.prompt;
    const messages =
      Array.isArray(prompt) &&
      prompt.length > 0 &&
      prompt.every(
        (m) =>
          m !== null &&
          typeof m === 'object' &&
          typeof (m as { role?: unknown }).role === 'string' &&
          typeof (m as { content?: unknown }).content === 'string',
      );
    if (!(typeof prompt === 'string' && prompt.length > 0) && !messages)
      throw bad('expected "prompt" to be a non-empty string or a list of {role, content} messages');
    let pair: unknown[];
    if (o.responses !== undefined) pair = Array.isArray(o.responses) ? o.responses : [];
    else if (o.chosen !== undefined || o.rejected !== undefined) pair = [o.chosen, o.rejected];
    else throw bad('expected "responses": [a, b] (or "chosen" and "rejected")');
    if (pair.length !== 2 || !pair.every((r) => typeof r === 'string'))
      throw bad('expected exactly two string responses');
    if (pair[0] === pair[1]) throw bad('the two responses are identical');
    const cleanPrompt = messages
      ? (prompt as Array<{ role: string; content: string }>).map((m) => ({ role: m.role, content: m.content }))
      : (prompt as string);
    return { prompt: cleanPrompt, a: pair[0] as string, b: pair[1] as string, source: where };
  });
}
