/**
 * Step-labelled responses for process reward models (docs/algorithms.md §4 PRM): `{prompt, steps, labels}`
 * with one label in [0, 1] per reasoning step (1 = the step is good: e.g. Monte-Carlo rollouts from
 * it reach the right answer). Extra keys are allowed. Errors are RlhfError FORMAT naming the place
 * (`file:line` or `options.<name>[i]`), as in formats.ts.
 *
 * A response is encoded step by step: prompt ids ++ encode(step_0 + separator) ++ encode(step_1 +
 * separator) ++ …, and step i is scored at the last token of its separator (`stepEnds[i]`, an index
 * into prompt ++ response). Training and scoring encode the same way, so a PRM reads its scores at
 * the positions it was trained on, whatever the tokenizer does across step boundaries.
 */
import { RlhfError, ErrorCode } from '../errors.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { parsePromptRecord, type Prompt } from './formats.js';
import { readJsonl } from '../io/jsonl.js';
import { encodePrompt } from './tokenize.js';

export interface StepRecord {
  prompt: Prompt;
  /** the response's reasoning steps, in order, without separators */
  steps: string[];
  /** one per step: 1 = good, 0 = bad (soft labels in [0, 1] allowed); booleans read as 0/1 */
  labels: number[];
}

const SHAPE = '{prompt, steps, labels}';

/** Checks one step-labelled record; `where` names it in errors. */
export function parseStepRecord(value: unknown, where: string): StepRecord {
  const { prompt } = parsePromptRecord(value, where);
  const obj = value as Record<string, unknown>;
  const steps = obj.steps,
    labels = obj.labels;
  if (!Array.isArray(steps) || steps.length === 0 || !steps.every((s) => typeof s === 'string'))
    throw new RlhfError(
      ErrorCode.FORMAT,
      `${where}: expected "steps" to be a non-empty array of strings (${SHAPE} record), got ${JSON.stringify(steps)?.slice(0, 80)}`,
    );
  if (!Array.isArray(labels) || labels.length !== steps.length)
    throw new RlhfError(
      ErrorCode.FORMAT,
      `${where}: expected "labels" to be an array of ${steps.length} labels, one per step (${SHAPE} record), got ${JSON.stringify(labels)?.slice(0, 80)}`,
    );
  const parsed = labels.map((l, i) => {
    const x = typeof l === 'boolean' ? Number(l) : l;
    if (typeof x !== 'number' || !(x >= 0 && x <= 1))
      throw new RlhfError(
        ErrorCode.FORMAT,
        `${where}: expected labels[${i}] to be 0, 1 or a number in [0, 1], got ${JSON.stringify(l)}`,
      );
    return x;
  });
  return { prompt, steps: steps as string[], labels: parsed };
}

/** Reads step records from a JSONL path or checks in-memory ones (`name` names the option); empty is a FORMAT error. */
export async function loadStepData(fn: string, name: string, source: unknown): Promise<StepRecord[]> {
  const out: StepRecord[] = [];
  if (typeof source === 'string') {
    for await (const { value, line } of readJsonl(source)) out.push(parseStepRecord(value, `${source}:${line}`));
    if (!out.length)
      throw new RlhfError(ErrorCode.FORMAT, `${source}: no records (the file is empty or has only blank lines)`);
  } else if (Array.isArray(source)) {
    source.forEach((r, i) => out.push(parseStepRecord(r, `${fn}: options.${name}[${i}]`)));
    if (!out.length) throw new RlhfError(ErrorCode.FORMAT, `${fn}: options.${name} is empty`);
  } else throw new TypeError(`${fn}: expected options.${name} to be a JSONL path or an array of ${SHAPE} records`);
  return out;
}

/** A response split into steps and encoded; `stepEnds` index prompt ++ response. */
export interface EncodedSteps {
  promptIds: Int32Array;
  responseIds: Int32Array;
  /** position of the last separator token of each step that fits in maxLength (ascending) */
  stepEnds: number[];
  /** steps cut off by maxLength (not in stepEnds) */
  droppedSteps: number;
}

/**
 * Encodes prompt ++ step_0 + separator ++ … (no eos), keeping at most `maxLength` tokens: the steps
 * whose separator falls past it are dropped (a response with none left has `stepEnds` empty). A
 * step that encodes to nothing (empty step and separator) is a FORMAT error: it has no position.
 */
export function encodeSteps(
  tok: Tokenizer,
  prompt: Prompt,
  steps: string[],
  separator: string,
  maxLength = Infinity,
): EncodedSteps {
  const promptIds = encodePrompt(tok, prompt);
  const response: number[] = [];
  const stepEnds: number[] = [];
  let dropped = 0;
  for (let i = 0; i < steps.length; i++) {
    const ids = tok.encode(steps[i] + separator);
    if (ids.length === 0)
      throw new RlhfError(ErrorCode.FORMAT, `encodeSteps: step ${i} plus the separator encodes to no token`);
    if (promptIds.length + response.length + ids.length > maxLength) {
      dropped = steps.length - i;
      break;
    }
    response.push(...ids);
    stepEnds.push(promptIds.length + response.length - 1);
  }
  return {
    promptIds: Int32Array.from(promptIds),
    responseIds: Int32Array.from(response),
    stepEnds,
    droppedSteps: dropped,
  };
}

/** Splits a response into steps at `separator` (empty pieces, e.g. after a trailing separator, dropped). */
export function splitSteps(response: string, separator: string): string[] {
  if (separator === '') throw new TypeError('splitSteps: expected separator to be a non-empty string');
  return response.split(separator).filter((s) => s.trim() !== '');
}
