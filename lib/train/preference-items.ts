/**
 * PreferenceTrainer's data (private to lib/train): records → items of tokenized rows.
 *
 *   pair      rows [chosen, rejected], best 0, worst 1
 *   group     *-rw losses: groupSize rows of one prompt with their scores (a pair is the group
 *             [chosen, rejected] with scores [1, 0], the official pref_to_rw); best / worst = the
 *             first best-scored and last worst-scored row
 *   unpaired  kto: one row with its label (desirable or not)
 *
 * Every response gets eos; rows are truncated to seqLen (logged), and items with an empty response
 * row (the prompt fills seqLen) are dropped (logged).
 */
import { RlhfError, ErrorCode } from '../errors.js';
import type { PreferenceRecord, ScoredRecord, UnpairedRecord } from '../data/index.js';
import type { Sequence } from '../rollout/sequences.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { encodeRow, isScored, isUnpaired, loadPairData } from './preference-common.js';
import { isGroupLoss, type PreferenceLoss } from './preference-losses.js';
import { bestWorst } from './preference-online.js';

export interface Item {
  rows: Sequence[];
  lengths: number[];
  scores?: number[];
  best: number;
  worst: number;
  /** unpaired KTO: the row's label (rows.length 1) */
  label?: boolean;
  /** reference sequence log-probs per row (filled after resume) */
  ref?: Float64Array;
}

export interface PreparedItems {
  train: Item[];
  eval?: Item[];
  /** rows per item of the pair and group items */
  k: number;
}

interface ItemOptions {
  loss: PreferenceLoss;
  k?: number;
  seqLen: number;
  batchSize: number;
  desirableWeight: number;
  undesirableWeight: number;
}

/** Loads and tokenizes `data.train` and `data.eval` (see the module comment). */
export async function prepareItems(
  fn: string,
  data: { train: unknown; eval?: unknown },
  o: ItemOptions,
  tokenizer: Tokenizer,
  log: (message: string) => void,
): Promise<PreparedItems> {
  const group = isGroupLoss(o.loss);
  const accept = group ? 'groups' : o.loss === 'kto' ? 'kto' : 'pairs';
  const train = await loadPairData(fn, 'train', data.train, accept);
  const evalSet = data.eval !== undefined ? await loadPairData(fn, 'eval', data.eval, accept) : undefined;
  const asGroup = (r: PreferenceRecord | ScoredRecord): ScoredRecord =>
    isScored(r) ? r : { prompt: r.prompt, responses: [r.chosen, r.rejected], scores: [1, 0] };
  if (train.some(isUnpaired)) checkUnpaired(fn, train as UnpairedRecord[], o, log);
  let k = 2;
  if (group) {
    const counts = new Set(
      [...train, ...(evalSet ?? [])].map((r) => asGroup(r as PreferenceRecord | ScoredRecord).responses.length),
    );
    k = o.k ?? (counts.size === 1 ? [...counts][0] : 0);
    if (!k)
      throw new TypeError(
        `${fn}: the records have different numbers of responses (${[...counts].join(', ')}); set options.groupSize`,
      );
  }
  const toItems = (records: Array<PreferenceRecord | ScoredRecord | UnpairedRecord>, name: string): Item[] => {
    const items: Item[] = [];
    let truncated = 0,
      dropped = 0;
    records.forEach((r, i) => {
      if (isUnpaired(r)) {
        const x = encodeRow(tokenizer, r.prompt, r.completion, o.seqLen);
        if (x.truncated) truncated++;
        if (x.seq.responseIds.length === 0) dropped++;
        else items.push({ rows: [x.seq], lengths: [x.seq.responseIds.length], best: 0, worst: 0, label: r.label });
        return;
      }
      const g = group ? asGroup(r as PreferenceRecord | ScoredRecord) : undefined;
      if (g && g.responses.length % k !== 0)
        throw new RlhfError(
          ErrorCode.FORMAT,
          `${fn}: ${name} record ${i} has ${g.responses.length} responses, not a multiple of groupSize ${k}`,
        );
      for (let off = 0; off < (g ? g.responses.length : 2); off += k) {
        const texts = g
          ? g.responses.slice(off, off + k)
          : [(r as PreferenceRecord).chosen, (r as PreferenceRecord).rejected];
        const rows = texts.map((t) => encodeRow(tokenizer, r.prompt, t, o.seqLen));
        if (rows.some((x) => x.truncated)) truncated++;
        if (rows.some((x) => x.seq.responseIds.length === 0)) {
          dropped++;
          continue;
        }
        const scores = g?.scores.slice(off, off + k);
        const { best, worst } = scores ? bestWorst(scores) : { best: 0, worst: 1 };
        items.push({
          rows: rows.map((x) => x.seq),
          lengths: rows.map((x) => x.seq.responseIds.length),
          scores,
          best,
          worst,
        });
      }
    });
    if (truncated) log(`${name}: ${truncated} ${group ? 'groups' : 'pairs'} truncated to ${o.seqLen} tokens`);
    if (dropped)
      log(
        `${name}: ${dropped} ${group ? 'groups' : 'pairs'} dropped: the prompt fills seqLen (${o.seqLen}), leaving no response token`,
      );
    if (!items.length) throw new RlhfError(ErrorCode.FORMAT, `${fn}: no ${name} item left to train on`);
    return items;
  };
  return { train: toItems(train, 'train'), eval: evalSet && toItems(evalSet, 'eval'), k };
}

/** Unpaired KTO data: checks the batch size and logs TRL's advice on the weights. */
function checkUnpaired(fn: string, records: UnpairedRecord[], o: ItemOptions, log: (message: string) => void): void {
  if (o.batchSize < 2)
    throw new TypeError(
      `${fn}: expected options.batchSize to be >= 2 for KTO on unpaired data (z0 is taken on mismatched rows of a micro-batch), received ${o.batchSize}`,
    );
  const nd = records.filter((r) => r.label).length,
    nu = records.length - nd;
  const ratio = (o.desirableWeight * nd) / (o.undesirableWeight * nu);
  if (!(ratio >= 1 && ratio <= 4 / 3))
    log(
      `kto: ${nd} desirable and ${nu} undesirable rows; desirableWeight·${nd} / (undesirableWeight·${nu}) = ${ratio.toFixed(3)}, outside [1, 4/3] (the KTO paper's advice; set the weights to bring it inside)`,
    );
}
