/**
 * Default judge prompts of the LongReward pipeline, written for this engine from the criteria in
 * docs/algorithms.md §5.3–5.4 (the official few-shot prompts are not reproduced). Every rating prompt asks
 * for the analysis first and the rating last as `[[x]]`; the support verdict is one of
 * `[[Fully supported]]`, `[[Partially supported]]`, `[[No support]]` in both languages (the parser
 * reads English labels). Placeholders are `{{name}}`, filled in one pass by `fillTemplate`.
 */
import { typeError } from '../../validate.js';

/** The six prompts of the pipeline. */
export type PromptName =
  'helpfulness' | 'logicality' | 'statements' | 'faithfulness' | 'infoExtraction' | 'completeness';

/** One prompt in English and Chinese. */
export interface LocalizedPrompt {
  en: string;
  zh: string;
}

/** All prompt templates, one {@link LocalizedPrompt} per pipeline step. */
export type LongRewardPrompts = Record<PromptName, LocalizedPrompt>;

/** The placeholders each template must contain. */
export const PROMPT_PLACEHOLDERS: Readonly<Record<PromptName, readonly string[]>> = {
  helpfulness: ['question', 'answer'],
  logicality: ['question', 'answer'],
  statements: ['question', 'answer'],
  faithfulness: ['statement', 'context'],
  infoExtraction: ['context', 'question'],
  completeness: ['question', 'context', 'answer'],
};

const helpfulnessEn = `You are reviewing how helpful an AI assistant's answer is. You see the user's question and the answer, but not the document the question is about.
Judge the answer on:
1. Relevance: does it address what the question actually asks?
2. Needs: does it serve the user's purpose, not just the literal wording?
3. Completeness and fit: is it adequately detailed, neither padded nor cut short, and appropriate in tone?
4. Format: does it follow any format, length or style the question requests?
First write a short analysis covering these points. Then give a rating from 0 (useless) to 10 (ideal) on the last line, in double brackets, e.g. [[6]].

[Question]
{{question}}

[Answer]
{{answer}}

[Analysis]`;

const helpfulnessZh = `你是一名评审员，需要评价AI助手回答的有用性。你能看到用户的问题和助手的回答，但看不到问题所依据的文档。
请从以下方面评价：
1. 相关性：回答是否针对问题本身；
2. 需求满足：回答是否满足用户的真实目的和需要；
3. 完整与得体：回答是否详略得当、内容充分、语气恰当；
4. 格式：回答是否遵循问题中对格式、长度或风格的要求。
请先给出简要分析，最后一行用双方括号给出0（毫无帮助）到10（完美）之间的评分，例如：[[6]]。

[问题]
{{question}}

[回答]
{{answer}}

[分析]`;

const logicalityEn = `You are checking the logic of an AI assistant's answer. Judge only the answer's internal coherence; do not use outside knowledge and do not judge whether its facts are true.
Look for:
1. Consistency: do the parts of the answer agree with each other?
2. A stable position: does it keep one stance from start to end?
3. Sound reasoning: do conclusions follow from what is stated, and are any calculations right?
4. Self-contradiction anywhere in the text.
First write a short analysis. Then give a rating from 0 (incoherent) to 10 (flawless) on the last line, in double brackets, e.g. [[8]].

[Question]
{{question}}

[Answer]
{{answer}}

[Analysis]`;

const logicalityZh = `你需要检查AI助手回答的逻辑性。只评价回答内部是否自洽，不要借助外部知识，也不要判断其中事实的真假。
请关注：
1. 一致性：回答的各部分之间是否相互吻合；
2. 立场稳定：回答是否自始至终保持同一立场；
3. 推理正确：结论是否能由前文推出，其中的计算是否正确；
4. 是否存在任何自相矛盾之处。
请先给出简要分析，最后一行用双方括号给出0（混乱）到10（无懈可击）之间的评分，例如：[[8]]。

[问题]
{{question}}

[回答]
{{answer}}

[分析]`;

const statementsEn = `Below are a question about a document and an answer to it. List the factual statements of the answer that should be checkable against the document.
Rules:
- Keep only sentences that state facts taken from the document.
- Skip openings, transitions, summaries, opinions, and the answer's own inferences or suggestions.
- Make every statement self-contained: add a missing subject and replace pronouns with what they refer to.
- Put each statement on its own line inside <statement></statement>. If there is none, output nothing else.
Example: for the answer "The report covers 2019. It found that sales rose 5%, which is encouraging." output
<statement>The report covers 2019.</statement>
<statement>The report found that sales rose 5%.</statement>

[Question]
{{question}}

[Answer]
{{answer}}

[Statements]`;

const statementsZh = `下面是一个关于某文档的问题和对应的回答。请列出回答中可以依据文档核实的事实性陈述。
要求：
- 只保留陈述文档中事实的句子；
- 跳过开场白、过渡句、总结、观点，以及回答自己的推断或建议；
- 每条陈述须独立完整：补全缺失的主语，把代词替换为其所指对象；
- 每条陈述单独一行，放在<statement></statement>中；若没有此类陈述，则不要输出其他内容。
示例：对于回答“报告涵盖2019年。它发现销售额增长了5%，令人鼓舞。”应输出
<statement>报告涵盖2019年。</statement>
<statement>报告发现销售额增长了5%。</statement>

[问题]
{{question}}

[回答]
{{answer}}

[陈述]`;

const faithfulnessEn = `Decide whether the statement is supported by the passages, which are excerpts of a document in their original order. Use only the passages, not outside knowledge.
- Fully supported: every part of the statement is stated in or directly follows from the passages.
- Partially supported: some of it is supported, but some is missing or differs.
- No support: the passages do not support it, or contradict it.
First explain briefly. Then end with exactly one of [[Fully supported]], [[Partially supported]], [[No support]].

[Passages]
{{context}}

[Statement]
{{statement}}

[Analysis]`;

const faithfulnessZh = `请判断陈述是否得到文段的支持。文段摘自同一文档，按原文顺序排列。只能依据文段判断，不要使用外部知识。
- Fully supported（完全支持）：陈述的每一部分都在文段中明确给出或可直接推出；
- Partially supported（部分支持）：陈述的一部分有依据，另一部分缺失或与文段不符；
- No support（不支持）：文段不支持该陈述，或与之矛盾。
请先简要说明理由，最后以以下三者之一结尾（保留英文）：[[Fully supported]]、[[Partially supported]]、[[No support]]。

[文段]
{{context}}

[陈述]
{{statement}}

[分析]`;

const infoEn = `Here is part of a long document and a question about the whole document. List, as a numbered list, every fact in this part that helps answer the question; quote or closely paraphrase the text and keep numbers, names and dates exact. Do not answer the question and do not add anything that is not in this part.
If this part contains nothing relevant, reply only: No relevant information

[Document part]
{{context}}

[Question]
{{question}}

[Relevant information]`;

const infoZh = `下面是一篇长文档的一部分，以及一个针对整篇文档的问题。请以编号列表列出这一部分中有助于回答该问题的全部信息，尽量引用或贴近原文转述，数字、名称和日期须准确。不要回答问题，也不要添加这一部分中没有的内容。
如果这一部分没有相关内容，只回复：No relevant information

[文档片段]
{{context}}

[问题]
{{question}}

[相关信息]`;

const completenessEn = `You are judging whether an AI assistant's answer is complete. Below are the question, the relevant information found in each part of the document (labelled by its position in the document), and the answer.
Check whether the answer covers the key points that the question needs from this information, and whether it leaves out anything important. Points irrelevant to the question do not count.
First write a short analysis listing what is covered and what is missing. Then give a rating from 0 (misses everything important) to 10 (nothing important omitted) on the last line, in double brackets, e.g. [[7]].

[Question]
{{question}}

[Relevant information from the document]
{{context}}

[Answer]
{{answer}}

[Analysis]`;

const completenessZh = `你需要评价AI助手回答的完整性。下面给出问题、从文档各部分提取的相关信息（按其在文档中的位置标注），以及助手的回答。
请检查回答是否涵盖了问题所需的关键信息点，是否遗漏了重要内容；与问题无关的信息不计入。
请先给出简要分析，列出已涵盖和遗漏的要点，最后一行用双方括号给出0（遗漏全部要点）到10（无重要遗漏）之间的评分，例如：[[7]]。

[问题]
{{question}}

[文档中的相关信息]
{{context}}

[回答]
{{answer}}

[分析]`;

/** The built-in templates (frozen; pass `prompts` to LongReward to replace some). */
export const DEFAULT_PROMPTS: Readonly<LongRewardPrompts> = Object.freeze({
  helpfulness: Object.freeze({ en: helpfulnessEn, zh: helpfulnessZh }),
  logicality: Object.freeze({ en: logicalityEn, zh: logicalityZh }),
  statements: Object.freeze({ en: statementsEn, zh: statementsZh }),
  faithfulness: Object.freeze({ en: faithfulnessEn, zh: faithfulnessZh }),
  infoExtraction: Object.freeze({ en: infoEn, zh: infoZh }),
  completeness: Object.freeze({ en: completenessEn, zh: completenessZh }),
});

/**
 * The defaults with `overrides` applied. Every template given must be a string containing its
 * step's placeholders (`{{question}}`...); unknown step names are rejected.
 */
export function resolvePrompts(fn: string, path: string, overrides: unknown): LongRewardPrompts {
  const out = { ...DEFAULT_PROMPTS } as LongRewardPrompts;
  if (overrides === undefined) return out;
  if (overrides === null || typeof overrides !== 'object' || Array.isArray(overrides))
    throw typeError(fn, path, 'an object', overrides);
  const names = Object.keys(PROMPT_PLACEHOLDERS) as PromptName[];
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) continue;
    if (!names.includes(key as PromptName))
      throw new TypeError(`${fn}: unknown prompt ${path}.${key} (known: ${names.join(', ')})`);
    const name = key as PromptName;
    if (value === null || typeof value !== 'object' || Array.isArray(value))
      throw typeError(fn, `${path}.${name}`, 'an object {en?, zh?}', value);
    const merged = { ...DEFAULT_PROMPTS[name] };
    for (const [lang, template] of Object.entries(value as Record<string, unknown>)) {
      if (template === undefined) continue;
      if (lang !== 'en' && lang !== 'zh')
        throw new TypeError(`${fn}: unknown language ${path}.${name}.${lang} (known: en, zh)`);
      const where = `${path}.${name}.${lang}`;
      if (typeof template !== 'string') throw typeError(fn, where, 'a string', template);
      for (const p of PROMPT_PLACEHOLDERS[name])
        if (!template.includes(`{{${p}}}`)) throw typeError(fn, where, `a template containing {{${p}}}`, template);
      merged[lang] = template;
    }
    out[name] = merged;
  }
  return out;
}
