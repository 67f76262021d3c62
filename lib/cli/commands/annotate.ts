/** rlhf annotate: a web page where people label response pairs; rlhf annotate export: the labels as preference pairs. */
import { writeFile } from 'node:fs/promises';
import { writeJsonl } from '../../data/index.js';
import { exportPreferences, LabelDb, loadCandidates, startAnnotateServer } from '../../annotate/index.js';
import { pathExists } from '../../io/atomic.js';
import { CliError, onInterrupt, type CommandHandler, type CommandSpec } from '../framework/index.js';

export const annotateSpec: CommandSpec = {
  name: 'annotate',
  summary:
    'label response pairs in the browser (ChatGLM-RLHF collection); "annotate export" writes the preference pairs',
  description:
    'Serves a labelling page (loopback unless --host says otherwise). Annotators sign in with a name (and --token if set), see the prompt and two responses side by side in random order, and answer A better / B better / tie (both good) / tie (both bad) / skip, with an optional reason; keys 1 2 3 4 S, U to undo. ' +
    'Answers are committed to the SQLite database before the next item shows. Every item gets --labels-per-item answers (skips do not count), never two from one person. ' +
    '"rlhf annotate export" drops ties, takes the majority vote, drops items whose winner has less than --min-agreement of the votes and pairs inside preference cycles of one prompt, writes {prompt, chosen, rejected} lines and prints the agreement report (pairwise agreement, Fleiss\' and Cohen\'s kappa, per annotator).',
  positional: { name: 'action', describe: 'export: write the preference pairs from --db (omit to serve the page)' },
  flags: {
    pairs: {
      type: 'path',
      placeholder: 'candidates.jsonl',
      describe: 'pairs to label: {prompt, responses: [a, b]} (loaded into --db; lines already there are skipped)',
    },
    db: {
      type: 'path',
      required: true,
      placeholder: 'labels.sqlite',
      describe: 'the label database (created if missing)',
    },
    host: { type: 'string', default: '127.0.0.1', describe: 'address to listen on' },
    port: { type: 'int', min: 0, max: 65535, default: 8080, describe: 'port (0 picks a free one)' },
    token: {
      type: 'string',
      placeholder: 'secret',
      describe: 'shared access token for sign-in (default: RLHF_ANNOTATE_TOKEN if set)',
    },
    labelsPerItem: {
      type: 'int',
      min: 1,
      max: 100,
      placeholder: 'k',
      describe: 'answers wanted per item (default 1; fixed when the database is created)',
    },
    out: { type: 'path', placeholder: 'preferences.jsonl', describe: 'export: the preference pairs' },
    report: { type: 'path', placeholder: 'report.json', describe: 'export: also write the agreement report here' },
    minAgreement: {
      type: 'number',
      min: 0,
      max: 1,
      default: 0.6,
      describe: "export: the majority's least share of an item's votes (ties count against it)",
    },
  },
  examples: [
    'rlhf annotate --pairs candidates.jsonl --db labels.sqlite --port 8080 --labels-per-item 3',
    'rlhf annotate export --db labels.sqlite --out preferences.jsonl --report agreement.json',
  ],
};

export const annotateCommand: CommandHandler = async (o, ctx) => {
  const dbPath = o.db as string;
  if (o.action === 'export') {
    if (!o.out) throw new CliError('annotate export needs --out <preferences.jsonl>');
    if (!(await pathExists(dbPath))) throw new CliError(`--db ${dbPath}: no such database`);
    const db = new LabelDb(dbPath);
    try {
      const r = exportPreferences(db, { minAgreement: o.minAgreement as number });
      await writeJsonl(
        o.out as string,
        r.pairs.map((p) => ({ prompt: p.prompt, chosen: p.chosen, rejected: p.rejected })),
      );
      if (o.report)
        await writeFile(o.report as string, JSON.stringify({ dropped: r.dropped, ...r.report }, null, 2) + '\n');
      const f = (x: number | null) => (x === null ? 'n/a' : x.toFixed(3));
      ctx.stdout.write(
        `${r.pairs.length} pairs written to ${o.out} (dropped: ${r.dropped.unlabelled} unlabelled, ${r.dropped.ties} ties, ${r.dropped.disagreement} below agreement ${o.minAgreement}, ${r.dropped.cycles} in preference cycles)\n`,
      );
      ctx.stdout.write(
        `agreement: pairwise ${f(r.report.pairwiseAgreement)}, Fleiss' kappa ${f(r.report.fleissKappa)} (${r.report.answers} answers on ${r.report.labelledItems} of ${r.report.items} items, ${r.report.skips} skips)\n`,
      );
      for (const c of r.report.cohensKappa)
        ctx.stdout.write(
          `  ${c.annotators[0]} / ${c.annotators[1]}: ${c.items} shared items, agreement ${f(c.agreement)}, Cohen's kappa ${f(c.kappa)}\n`,
        );
      for (const a of r.report.annotators)
        ctx.stdout.write(
          `  ${a.name}: ${a.answers} answers (${a.ties} ties), ${a.skips} skips, agreement with others ${f(a.agreement)}\n`,
        );
    } finally {
      db.close();
    }
    return 0;
  }
  if (o.action !== undefined) throw new CliError(`unknown action "${o.action}" (the only one is export)`);
  let db: LabelDb;
  try {
    db = new LabelDb(dbPath, o.labelsPerItem !== undefined ? { labelsPerItem: o.labelsPerItem as number } : {});
  } catch (err) {
    if (err instanceof RangeError) throw new CliError(err.message);
    throw err;
  }
  try {
    if (o.pairs) {
      const added = db.addItems(await loadCandidates(o.pairs as string));
      ctx.stdout.write(`${added} new items from ${o.pairs}\n`);
    }
    const token = (o.token as string | undefined) ?? process.env.RLHF_ANNOTATE_TOKEN ?? undefined;
    const server = await startAnnotateServer({
      db,
      host: o.host as string,
      port: o.port as number,
      ...(token ? { token } : {}),
    });
    ctx.stdout.write(
      `rlhf annotate: open ${server.url} (${db.labelsPerItem} answer${db.labelsPerItem === 1 ? '' : 's'} per item${token ? ', access token required' : ''})\n`,
    );
    await new Promise<void>((done) => {
      onInterrupt(done);
      process.once('SIGTERM', done);
    });
    await server.close();
  } finally {
    db.close();
  }
  return 0;
};
