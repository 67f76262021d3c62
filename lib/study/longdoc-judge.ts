/**
 * The gold function of the long-document task (lib/study/longdoc.ts) as a LongReward judge: a
 * JudgeModel that reads the pipeline's own prompts (lib/rewards/longreward/prompts.ts, English) and
 * answers each as a careful judge would, from only what the prompt shows it:
 *   helpfulness, logicality  the question and the answer        → goldHelpfulness, goldLogicality
 *   statements               the answer                         → its sentences of the fact form
 *   faithfulness             one statement and the retrieved passages → fully supported when the
 *                            passages contain that fact sentence, else no support
 *   infoExtraction           one document chunk and the question → the chunk's facts about the
 *                            asked entity and attributes, numbered
 *   completeness             the extracted facts and the answer → 10 × share of them the answer states
 * Faithfulness and completeness therefore depend on what the pipeline retrieved and extracted, as
 * with a served judge; a served model (OpenAIJudge) can take this one's place unchanged.
 */
import { DEFAULT_PROMPTS, NO_RELEVANT_INFORMATION, type PromptName } from '../rewards/longreward/index.js';
import type { JudgeCallOptions, JudgeModel } from '../rewards/longreward/index.js';
import { RlhfError, ErrorCode } from '../errors.js';
import {
  factSentence,
  goldHelpfulness,
  goldLogicality,
  parseQuestion,
  parseStatement,
  sentencesOf,
  type Fact,
} from './longdoc.js';

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A template as a regular expression with one named group per placeholder. */
function templateRegex(template: string): RegExp {
  const parts = template.split(/\{\{(\w+)\}\}/);
  return new RegExp('^' + parts.map((p, i) => (i % 2 ? `(?<${p}>[\\s\\S]*?)` : escapeRe(p))).join('') + '$');
}

const STEPS = Object.keys(DEFAULT_PROMPTS) as PromptName[];
const PATTERNS = STEPS.map((name) => ({ name, re: templateRegex(DEFAULT_PROMPTS[name].en) }));

/** Every fact sentence in `text` (passages, a chunk), in order. */
function factsIn(text: string): Fact[] {
  const out: Fact[] = [];
  for (const m of text.matchAll(/(\w+)'s (\w+) is (\w+)\./g)) out.push({ entity: m[1], attribute: m[2], value: m[3] });
  return out;
}

/** The passages with their "[Passage k]" headers removed, so adjacent chunks join up again. */
const joinPassages = (context: string) => context.replace(/(^|\n\n)\[Passage \d+\]\n/g, '');

export class LongDocGoldJudge implements JudgeModel {
  /** judge calls answered, per step */
  readonly calls: Record<string, number> = Object.fromEntries(STEPS.map((s) => [s, 0]));

  async complete(prompt: string, _options: JudgeCallOptions): Promise<string> {
    for (const { name, re } of PATTERNS) {
      const m = re.exec(prompt);
      if (!m) continue;
      this.calls[name]++;
      return this.answer(name, m.groups!);
    }
    throw new RlhfError(
      ErrorCode.FORMAT,
      'LongDocGoldJudge: the prompt matches none of the LongReward default English templates',
    );
  }

  private answer(name: PromptName, g: Record<string, string>): string {
    switch (name) {
      case 'helpfulness': {
        const q = parseQuestion(g.question);
        const score = q ? goldHelpfulness(q, g.answer) : 0;
        return `The answer addresses the asked attributes to this degree.\n[[${score}]]`;
      }
      case 'logicality':
        return `Checked the statements against each other.\n[[${goldLogicality(g.answer)}]]`;
      case 'statements':
        return sentencesOf(g.answer)
          .filter((s) => parseStatement(s) !== null)
          .map((s) => `<statement>${s}</statement>`)
          .join('\n');
      case 'faithfulness': {
        const s = parseStatement(g.statement);
        const passages = joinPassages(g.context);
        const supported = s !== null && passages.includes(factSentence(s));
        return supported
          ? 'The passages state it.\n[[Fully supported]]'
          : 'The passages do not state it.\n[[No support]]';
      }
      case 'infoExtraction': {
        const q = parseQuestion(g.question);
        const facts = q ? factsIn(g.context).filter((f) => f.entity === q.entity && q.asked.includes(f.attribute)) : [];
        return facts.length ? facts.map((f, i) => `${i + 1}. ${factSentence(f)}`).join('\n') : NO_RELEVANT_INFORMATION;
      }
      case 'completeness': {
        const info = factsIn(g.context);
        const stated = sentencesOf(g.answer);
        const covered = info.filter((f) => stated.includes(factSentence(f))).length;
        const q = parseQuestion(g.question);
        const needed = Math.max(info.length, q ? q.asked.length : 1);
        return `Covered ${covered} of ${needed} key points.\n[[${(10 * covered) / needed}]]`;
      }
    }
  }
}
