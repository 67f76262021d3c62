/**
 * A calculator tool environment for the demo task's arithmetic (lib/rollout/environment.ts).
 *
 *   tool call  a turn `calc <expression>` (integers and decimals, + − * /, parentheses, unary
 *              minus): the observation is the value (`7`, `2.5`) or `error: <why>`; reward 0
 *   answer     any other turn ends the episode: reward `correctReward` (default 1) when the number
 *              it states (the last one, digits or number words, as the gold function reads it)
 *              equals the record's `answer` field, else 0
 *
 * The record must carry `answer` (a finite number): `{prompt, answer}`.
 */
import { ErrorCode, RlhfError } from '../errors.js';
import type { PromptRecord } from '../data/index.js';
import type { Environment, EnvironmentStep } from '../rollout/environment.js';
import { options } from '../validate.js';
import { statedAnswer } from './task.js';

const CALL = /^\s*calc\s+(.+?)\s*$/s;

export class CalculatorEnvironment implements Environment {
  readonly role: string;
  readonly correctReward: number;
  #answer = NaN;

  /** @param opts role of the observation messages (default 'user'), correctReward (default 1) */
  constructor(opts: { role?: string; correctReward?: number } = {}) {
    const o = options('CalculatorEnvironment', 'options', opts);
    o.known(['role', 'correctReward']);
    this.role = o.has('role') ? String(o.obj.role) : 'user';
    this.correctReward = o.number('correctReward', {}, 1);
  }

  reset(record: PromptRecord): undefined {
    if (typeof record.answer !== 'number' || !Number.isFinite(record.answer))
      throw new RlhfError(
        ErrorCode.FORMAT,
        `CalculatorEnvironment: expected the prompt record's "answer" to be a finite number, got ${JSON.stringify(record.answer) ?? 'nothing'}`,
      );
    this.#answer = record.answer;
    return undefined;
  }

  step(action: string): EnvironmentStep {
    const call = CALL.exec(action);
    if (call) {
      let observation: string;
      try {
        observation = formatNumber(evaluate(call[1]));
      } catch (e) {
        observation = `error: ${(e as Error).message}`;
      }
      return { observation, reward: 0, done: false };
    }
    return { reward: statedAnswer(action) === this.#answer ? this.correctReward : 0, done: true };
  }
}

function formatNumber(x: number): string {
  return Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(12)));
}

/**
 * Evaluates an arithmetic expression by recursive descent (no `eval`): expr = term (('+'|'-') term)*,
 * term = factor (('*'|'/') factor)*, factor = '-' factor | number | '(' expr ')'. Throws an Error
 * saying what is wrong (an unexpected character, division by zero, a result that is not finite).
 */
export function evaluate(text: string): number {
  const src = text.replace(/\s+/g, '');
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(why);
  };
  const expr = (depth: number): number => {
    if (depth > 64) fail('too deeply nested');
    let v = term(depth);
    while (src[i] === '+' || src[i] === '-') v = src[i++] === '+' ? v + term(depth) : v - term(depth);
    return v;
  };
  const term = (depth: number): number => {
    let v = factor(depth);
    while (src[i] === '*' || src[i] === '/') {
      const op = src[i++];
      const r = factor(depth);
      if (op === '/' && r === 0) fail('division by zero');
      v = op === '*' ? v * r : v / r;
    }
    return v;
  };
  const factor = (depth: number): number => {
    if (src[i] === '-') return (i++, -factor(depth + 1));
    if (src[i] === '(') {
      i++;
      const v = expr(depth + 1);
      if (src[i] !== ')') fail(i < src.length ? `expected ")" at "${src.slice(i, i + 8)}"` : 'missing ")"');
      i++;
      return v;
    }
    const m = /^\d+(\.\d+)?/.exec(src.slice(i));
    if (!m) fail(i < src.length ? `unexpected "${src.slice(i, i + 8)}"` : 'unexpected end');
    i += m![0].length;
    return Number(m![0]);
  };
  if (!src) fail('empty expression');
  const v = expr(0);
  if (i < src.length) fail(`unexpected "${src.slice(i, i + 8)}"`);
  if (!Number.isFinite(v)) fail('the result is not finite');
  return v;
}
