/**
 * Correctness-labelled records for the multi-task reward model of "Does RLHF Scale?" (docs/algorithms.md §4):
 * `{prompt, response, label}` with `label` 0 (wrong) or 1 (correct), or a soft label in [0, 1]
 * (booleans are accepted as 0/1). Extra keys are allowed. Errors are RlhfError FORMAT naming the
 * place (`file:line` or `options.correctness[i]`), as in lib/data/formats.ts.
 */
import { RlhfError, ErrorCode } from '../errors.js';
import { parsePromptRecord, readJsonl, type Prompt } from '../data/index.js';

/** One correctness-labelled response. */
export interface CorrectnessRecord {
  prompt: Prompt;
  response: string;
  /** 1 = correct, 0 = wrong (soft labels in [0, 1] allowed) */
  label: number;
}

const LABEL = '{prompt, response, label}';

/** Checks one correctness record; `where` names it in errors. */
export function parseCorrectnessRecord(value: unknown, where: string): CorrectnessRecord {
  const { prompt } = parsePromptRecord(value, where);
  const obj = value as Record<string, unknown>;
  if (typeof obj.response !== 'string')
    throw new RlhfError(
      ErrorCode.FORMAT,
      `${where}: expected "response" to be a string (${LABEL} record), got ${typeof obj.response}`,
    );
  const label = typeof obj.label === 'boolean' ? Number(obj.label) : obj.label;
  if (typeof label !== 'number' || !(label >= 0 && label <= 1))
    throw new RlhfError(
      ErrorCode.FORMAT,
      `${where}: expected "label" to be 0, 1 or a number in [0, 1] (${LABEL} record), got ${JSON.stringify(obj.label)}`,
    );
  return { prompt, response: obj.response, label };
}

/** Reads correctness records from a JSONL path or checks in-memory ones; empty is a FORMAT error. */
export async function loadCorrectnessData(fn: string, source: unknown): Promise<CorrectnessRecord[]> {
  const out: CorrectnessRecord[] = [];
  if (typeof source === 'string') {
    for await (const { value, line } of readJsonl(source)) out.push(parseCorrectnessRecord(value, `${source}:${line}`));
    if (!out.length)
      throw new RlhfError(ErrorCode.FORMAT, `${source}: no records (the file is empty or has only blank lines)`);
  } else if (Array.isArray(source)) {
    source.forEach((r, i) => out.push(parseCorrectnessRecord(r, `${fn}: options.correctness[${i}]`)));
    if (!out.length) throw new RlhfError(ErrorCode.FORMAT, `${fn}: options.correctness is empty`);
  } else
    throw new TypeError(
      `${fn}: expected options.correctness to be a JSONL path or an array of {prompt, response, label} records`,
    );
  return out;
}
