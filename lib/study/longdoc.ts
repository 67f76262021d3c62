/**
 * The `longreward` study's task, made in code: a long document (a few thousand byte tokens) of
 * filler sentences with facts planted at random places, and a question that needs two of them.
 *
 *   document:  "... The council met in the old hall. Kestrel's city is Lima. The rain kept on ..."
 *   question:  "According to the document, what are the colour and city of Kestrel?"
 *   ideal:     "Kestrel's colour is blue. Kestrel's city is Lima."
 *
 * A fact is "<Entity>'s <attribute> is <value>." Each document names `entitiesPerDoc` entities with
 * all three attributes (colour, city, animal). Every entity has a usual value per attribute; a
 * document states it with probability `usualRate`, else another value, so a policy that answers
 * from memory instead of the document is right that often.
 *
 * The gold function scores an answer on LongReward's four dimensions, each on 0..10:
 *   faithfulness  10 × the share of the answer's statements (sentences of the fact form) that the
 *                 document states; an answer with no statement: 10 (it asserts nothing, as the
 *                 LongReward pipeline's default `noStatements` convention)
 *   completeness  10 × the share of the asked facts the answer states correctly
 *   helpfulness   10 × the share of the asked attributes the answer addresses (any value), −2 per
 *                 sentence that is not about them (other attributes, other entities, filler); empty: 0
 *   logicality    10, −5 per pair of statements giving one attribute two values, −3 per repeated sentence
 * SFT demonstrations are imperfect: a wrong value for an asked fact (rate `wrongRate`), an extra
 * statement about an attribute that documents never state (`extraRate`, always unsupported), a
 * filler sentence (`fillerRate`).
 */
import type { ChatMessage } from '../tokenizer/index.js';
import { rng } from '../demo/task.js';

export const ENTITIES = [
  'Kestrel',
  'Marlow',
  'Juniper',
  'Osric',
  'Tamsin',
  'Bramble',
  'Corwin',
  'Delphine',
  'Elodie',
  'Fenwick',
  'Halvard',
  'Isolde',
] as const;

/** The attributes documents state, with their values. */
export const ATTRIBUTES: Readonly<Record<string, readonly string[]>> = {
  colour: ['red', 'blue', 'green', 'yellow', 'white', 'black'],
  city: ['Oslo', 'Lima', 'Cairo', 'Perth', 'Quito', 'Riga'],
  animal: ['cat', 'owl', 'fox', 'yak', 'eel', 'ram'],
};
export const STATED = Object.keys(ATTRIBUTES);

/** Attributes no document states: a statement about one is never supported. */
export const INVENTED: Readonly<Record<string, readonly string[]>> = {
  mood: ['calm', 'glum', 'merry'],
  tool: ['saw', 'awl', 'axe'],
};

const FILLER_ANSWER = ['Here is what I found.', 'Let me look at the document.', 'That is a good question.'];

const SUBJECTS = [
  'The council',
  'The old miller',
  'A traveller from the coast',
  'The river',
  'The baker',
  'Our neighbour',
  'The school',
  'A quiet wind',
  'The market',
  'The ferryman',
];
const VERBS = ['spoke about', 'waited for', 'remembered', 'carried', 'followed', 'painted', 'mended', 'counted'];
const OBJECTS = [
  'the long winter',
  'the bridge over the stream',
  'a basket of apples',
  'the harvest festival',
  'the lanterns by the road',
  'an old map of the valley',
  'the bells of the chapel',
  'the first snow',
  'the boats in the harbour',
  'a letter from the north',
];
const TAILS = ['', ' in the morning', ' after the storm', ' for many years', ' without a word', ' once again'];

export interface Fact {
  entity: string;
  attribute: string;
  value: string;
}

export const factSentence = (f: Fact): string => `${f.entity}'s ${f.attribute} is ${f.value}.`;

export interface LongDocTask {
  /** the long document */
  document: string;
  /** the question alone */
  question: string;
  entity: string;
  /** the asked attributes, in question order */
  asked: string[];
  /** every fact the document states */
  facts: Fact[];
  /** the user message: document, blank line, question */
  messages: ChatMessage[];
}

export interface LongDocOptions {
  /** document length in characters (= byte tokens for ASCII), at least */
  chars: number;
  entitiesPerDoc: number;
  /** probability that a document states an entity's usual value */
  usualRate: number;
}

/** The usual value of each (entity, attribute): fixed for the task (not per seed). */
export function usualValue(entity: string, attribute: string): string {
  const values = ATTRIBUTES[attribute];
  let h = 7;
  for (const ch of `${entity}/${attribute}`) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
  return values[h % values.length];
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.min(xs.length - 1, Math.floor(r() * xs.length))];

function shuffled<T>(r: () => number, xs: readonly T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** `count` tasks of one seed; each has its own document. */
export function makeLongDocTasks(seed: number, count: number, o: LongDocOptions): LongDocTask[] {
  const r = rng(0x10d0c + seed * 7919);
  return Array.from({ length: count }, () => {
    const entities = shuffled(r, ENTITIES).slice(0, o.entitiesPerDoc);
    const facts: Fact[] = entities.flatMap((entity) =>
      STATED.map((attribute) => {
        const usual = usualValue(entity, attribute);
        const others = ATTRIBUTES[attribute].filter((v) => v !== usual);
        return { entity, attribute, value: r() < o.usualRate ? usual : pick(r, others) };
      }),
    );
    const filler: string[] = [];
    let length = facts.reduce((a, f) => a + factSentence(f).length + 1, 0);
    while (length < o.chars) {
      const s = `${pick(r, SUBJECTS)} ${pick(r, VERBS)} ${pick(r, OBJECTS)}${pick(r, TAILS)}.`;
      filler.push(s);
      length += s.length + 1;
    }
    // facts at random places among the filler sentences
    const sentences = [...filler];
    for (const f of shuffled(r, facts)) sentences.splice(Math.floor(r() * (sentences.length + 1)), 0, factSentence(f));
    const document = sentences.join(' ');
    const entity = pick(r, entities);
    const asked = shuffled(r, STATED).slice(0, 2);
    const question = `According to the document, what are the ${asked[0]} and ${asked[1]} of ${entity}?`;
    return {
      document,
      question,
      entity,
      asked,
      facts,
      messages: [{ role: 'user', content: `${document}\n\n${question}` }],
    };
  });
}

/** The entity and asked attributes of a question made by makeLongDocTasks, or null. */
export function parseQuestion(question: string): { entity: string; asked: string[] } | null {
  const m = /^According to the document, what are the (\w+) and (\w+) of (\w+)\?$/.exec(question.trim());
  return m ? { entity: m[3], asked: [m[1], m[2]] } : null;
}

/** The answer's sentences (split after ".", "!" or "?"), trimmed, non-empty. */
export function sentencesOf(answer: string): string[] {
  return answer
    .split(/(?<=[.!?])\s+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** A sentence of the fact form, or null. */
export function parseStatement(sentence: string): Fact | null {
  const m = /^(\w+)'s (\w+) is (\w+)\.$/.exec(sentence.trim());
  return m ? { entity: m[1], attribute: m[2], value: m[3] } : null;
}

export interface LongDocScores {
  helpfulness: number;
  logicality: number;
  faithfulness: number;
  completeness: number;
  /** the sum (0..40) */
  total: number;
}

const clip10 = (x: number) => Math.max(0, Math.min(10, x));
const sameFact = (a: Fact, b: Fact) => a.entity === b.entity && a.attribute === b.attribute && a.value === b.value;

/** Helpfulness: judged on the question and the answer only (what the LongReward judge sees). */
export function goldHelpfulness(question: { entity: string; asked: string[] }, answer: string): number {
  const sentences = sentencesOf(answer);
  if (sentences.length === 0) return 0;
  const st = sentences.map(parseStatement);
  const onTopic = (f: Fact | null) =>
    f !== null && f.entity === question.entity && question.asked.includes(f.attribute);
  const addressed = question.asked.filter((a) => st.some((f) => onTopic(f) && f!.attribute === a)).length;
  const offTopic = st.filter((f) => !onTopic(f)).length;
  return clip10((10 * addressed) / question.asked.length - 2 * offTopic);
}

/** Logicality: judged on the answer alone. */
export function goldLogicality(answer: string): number {
  const sentences = sentencesOf(answer);
  const st = sentences.map(parseStatement).filter((f): f is Fact => f !== null);
  let contradictions = 0;
  for (let i = 0; i < st.length; i++)
    for (let j = i + 1; j < st.length; j++)
      if (st[i].entity === st[j].entity && st[i].attribute === st[j].attribute && st[i].value !== st[j].value)
        contradictions++;
  const repeats = sentences.length - new Set(sentences).size;
  return clip10(10 - 5 * contradictions - 3 * repeats);
}

/** The four gold scores of `answer` to `task`. */
export function goldLongScore(task: Pick<LongDocTask, 'entity' | 'asked' | 'facts'>, answer: string): LongDocScores {
  const statements = sentencesOf(answer)
    .map(parseStatement)
    .filter((f): f is Fact => f !== null);
  const supported = statements.filter((s) => task.facts.some((f) => sameFact(f, s))).length;
  const faithfulness = statements.length ? (10 * supported) / statements.length : 10;
  const correct = task.asked.filter((a) =>
    statements.some((s) => task.facts.some((f) => sameFact(f, s) && f.entity === task.entity && f.attribute === a)),
  ).length;
  const completeness = (10 * correct) / task.asked.length;
  const helpfulness = goldHelpfulness(task, answer);
  const logicality = goldLogicality(answer);
  return {
    helpfulness,
    logicality,
    faithfulness,
    completeness,
    total: helpfulness + logicality + faithfulness + completeness,
  };
}

export interface DemoFlaws {
  /** probability that an asked fact is given a wrong value */
  wrongRate: number;
  /** probability of one extra statement about an attribute no document states */
  extraRate: number;
  /** probability of a filler sentence first */
  fillerRate: number;
}

/** One SFT demonstration for `task`: the ideal answer with the flaws drawn at their rates. */
export function longDocDemonstration(task: LongDocTask, r: () => number, flaws: DemoFlaws): string {
  const out: string[] = [];
  if (r() < flaws.fillerRate) out.push(pick(r, FILLER_ANSWER));
  for (const a of task.asked) {
    const truth = task.facts.find((f) => f.entity === task.entity && f.attribute === a)!.value;
    const value =
      r() < flaws.wrongRate
        ? pick(
            r,
            ATTRIBUTES[a].filter((v) => v !== truth),
          )
        : truth;
    out.push(factSentence({ entity: task.entity, attribute: a, value }));
  }
  if (r() < flaws.extraRate) {
    const attribute = pick(r, Object.keys(INVENTED));
    out.push(factSentence({ entity: task.entity, attribute, value: pick(r, INVENTED[attribute]) }));
  }
  return out.join(' ');
}
