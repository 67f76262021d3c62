/**
 * The labelling database (SQLite through better-sqlite3, WAL journal, synchronous=FULL: an answer
 * is on disk when its transaction returns). One writer: the annotate server process.
 *
 * Items are pairs (prompt, response_a, response_b) as loaded from the candidates file. Each
 * annotator sees an item at most once; the item is shown with its responses swapped or not (chosen
 * at random per annotator and recorded). Answers are stored in item terms: 'a' / 'b' (which of
 * response_a / response_b is better), 'tie_good', 'tie_bad', 'skip'. An item is handed out until it
 * has `labels_per_item` answers other than skip; a handed-out item is reserved for its annotator
 * for `leaseSeconds`, so concurrent annotators do not over-label it.
 */
import Database from 'better-sqlite3';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import type { Prompt } from '../data/formats.js';

export type Answer = 'a' | 'b' | 'tie_good' | 'tie_bad' | 'skip';
export const ANSWERS: readonly Answer[] = ['a', 'b', 'tie_good', 'tie_bad', 'skip'];

export interface Candidate {
  prompt: Prompt;
  a: string;
  b: string;
  /** where it came from (file:line), for messages */
  source?: string;
}

export interface Assignment {
  itemId: number;
  prompt: Prompt;
  /** the response shown on the left / right */
  left: string;
  right: string;
  swapped: boolean;
}

export interface Progress {
  done: number;
  remaining: number;
  total: number;
  /** fraction of this annotator's non-skip answers that equal another annotator's answer on the same item (ties merged), null when nothing to compare */
  agreement: number | null;
}

export interface LabelRow {
  itemId: number;
  annotator: string;
  answer: Answer;
  swapped: boolean;
  reason: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
  id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, prompt_json TEXT NOT NULL, prompt_key TEXT NOT NULL,
  response_a TEXT NOT NULL, response_b TEXT NOT NULL, source TEXT);
CREATE TABLE IF NOT EXISTS annotators (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (token TEXT PRIMARY KEY, annotator_id INTEGER NOT NULL REFERENCES annotators(id), created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
  item_id INTEGER NOT NULL REFERENCES items(id), annotator_id INTEGER NOT NULL REFERENCES annotators(id),
  swapped INTEGER NOT NULL, assigned_at INTEGER NOT NULL, PRIMARY KEY (item_id, annotator_id));
CREATE TABLE IF NOT EXISTS labels (
  id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL REFERENCES items(id), annotator_id INTEGER NOT NULL REFERENCES annotators(id),
  answer TEXT NOT NULL CHECK (answer IN ('a','b','tie_good','tie_bad','skip')), swapped INTEGER NOT NULL,
  reason TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, UNIQUE (item_id, annotator_id));
`;

export class LabelDb {
  readonly db: Database.Database;
  readonly leaseSeconds: number;

  constructor(path: string, opts: { labelsPerItem?: number; leaseSeconds?: number; readonly?: boolean } = {}) {
    this.db = new Database(path, opts.readonly ? { readonly: true, fileMustExist: true } : {});
    this.leaseSeconds = opts.leaseSeconds ?? 1800;
    if (opts.readonly) return;
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
    const stored = this.meta('labels_per_item');
    if (opts.labelsPerItem !== undefined && stored !== undefined && Number(stored) !== opts.labelsPerItem)
      throw new RangeError(
        `--labels-per-item ${opts.labelsPerItem}: ${path} was started with ${stored}; give the same value (or none)`,
      );
    if (stored === undefined)
      this.db
        .prepare('INSERT INTO meta (key, value) VALUES (?, ?)')
        .run('labels_per_item', String(opts.labelsPerItem ?? 1));
  }

  get labelsPerItem(): number {
    return Number(this.meta('labels_per_item') ?? 1);
  }

  private meta(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  close(): void {
    this.db.close();
  }

  /** Adds candidates (already present ones are ignored). Returns how many were new. */
  addItems(items: Candidate[]): number {
    const insert = this.db.prepare(
      'INSERT OR IGNORE INTO items (key, prompt_json, prompt_key, response_a, response_b, source) VALUES (?, ?, ?, ?, ?, ?)',
    );
    return this.db.transaction(() => {
      let added = 0;
      for (const it of items) {
        const promptJson = JSON.stringify(it.prompt);
        const key = createHash('sha256')
          .update(JSON.stringify([promptJson, it.a, it.b]))
          .digest('hex');
        added += insert.run(
          key,
          promptJson,
          createHash('sha256').update(promptJson).digest('hex'),
          it.a,
          it.b,
          it.source ?? null,
        ).changes;
      }
      return added;
    })();
  }

  /** Signs in (creating the annotator on first use); returns a new session token. */
  signIn(name: string): string {
    const token = randomBytes(24).toString('base64url');
    this.db.transaction(() => {
      this.db.prepare('INSERT OR IGNORE INTO annotators (name, created_at) VALUES (?, ?)').run(name, Date.now());
      const { id } = this.db.prepare('SELECT id FROM annotators WHERE name = ?').get(name) as { id: number };
      this.db
        .prepare('INSERT INTO sessions (token, annotator_id, created_at) VALUES (?, ?, ?)')
        .run(token, id, Date.now());
    })();
    return token;
  }

  /** The annotator of a session token, or undefined. */
  session(token: string): { id: number; name: string } | undefined {
    return this.db
      .prepare('SELECT a.id, a.name FROM sessions s JOIN annotators a ON a.id = s.annotator_id WHERE s.token = ?')
      .get(token) as { id: number; name: string } | undefined;
  }

  /**
   * The item this annotator should answer: their open assignment if any (a resumed session gets
   * the same item in the same order), else a new one, or undefined when none is left for them.
   */
  next(annotatorId: number): Assignment | undefined {
    return this.db.transaction(() => {
      const open = this.db
        .prepare(
          'SELECT s.item_id FROM assignments s WHERE s.annotator_id = ? AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.item_id = s.item_id AND l.annotator_id = s.annotator_id) ORDER BY s.assigned_at LIMIT 1',
        )
        .get(annotatorId) as { item_id: number } | undefined;
      if (open) {
        this.db
          .prepare('UPDATE assignments SET assigned_at = ? WHERE item_id = ? AND annotator_id = ?')
          .run(Date.now(), open.item_id, annotatorId);
        return this.assignment(open.item_id, annotatorId);
      }
      const since = Date.now() - this.leaseSeconds * 1000;
      const item = this.db
        .prepare(
          `SELECT i.id FROM items i
           WHERE NOT EXISTS (SELECT 1 FROM assignments s WHERE s.item_id = i.id AND s.annotator_id = @me)
             AND (SELECT COUNT(*) FROM labels l WHERE l.item_id = i.id AND l.answer != 'skip')
               + (SELECT COUNT(*) FROM assignments s WHERE s.item_id = i.id AND s.assigned_at >= @since
                    AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.item_id = s.item_id AND l.annotator_id = s.annotator_id)) < @k
           ORDER BY (SELECT COUNT(*) FROM labels l WHERE l.item_id = i.id AND l.answer != 'skip') DESC, i.id
           LIMIT 1`,
        )
        .get({ me: annotatorId, since, k: this.labelsPerItem }) as { id: number } | undefined;
      if (!item) return undefined;
      this.db
        .prepare('INSERT INTO assignments (item_id, annotator_id, swapped, assigned_at) VALUES (?, ?, ?, ?)')
        .run(item.id, annotatorId, randomInt(2), Date.now());
      return this.assignment(item.id, annotatorId);
    })();
  }

  private assignment(itemId: number, annotatorId: number): Assignment {
    const r = this.db
      .prepare(
        'SELECT i.prompt_json, i.response_a, i.response_b, s.swapped FROM items i JOIN assignments s ON s.item_id = i.id WHERE i.id = ? AND s.annotator_id = ?',
      )
      .get(itemId, annotatorId) as { prompt_json: string; response_a: string; response_b: string; swapped: number };
    const swapped = r.swapped === 1;
    return {
      itemId,
      prompt: JSON.parse(r.prompt_json) as Prompt,
      left: swapped ? r.response_b : r.response_a,
      right: swapped ? r.response_a : r.response_b,
      swapped,
    };
  }

  /**
   * Records an answer given in display terms (left / right / tie_good / tie_bad / skip) for the
   * annotator's open assignment `itemId`. Throws RangeError when that item is not theirs to answer.
   */
  answer(
    annotatorId: number,
    itemId: number,
    shown: 'left' | 'right' | 'tie_good' | 'tie_bad' | 'skip',
    reason: string,
  ): void {
    this.db.transaction(() => {
      const s = this.db
        .prepare('SELECT swapped FROM assignments WHERE item_id = ? AND annotator_id = ?')
        .get(itemId, annotatorId) as { swapped: number } | undefined;
      if (!s) throw new RangeError(`item ${itemId} was not given to you`);
      const done = this.db
        .prepare('SELECT 1 FROM labels WHERE item_id = ? AND annotator_id = ?')
        .get(itemId, annotatorId);
      if (done) throw new RangeError(`item ${itemId} is already answered (undo it first)`);
      const answer: Answer =
        shown === 'left' ? (s.swapped ? 'b' : 'a') : shown === 'right' ? (s.swapped ? 'a' : 'b') : shown;
      this.db
        .prepare(
          'INSERT INTO labels (item_id, annotator_id, answer, swapped, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)',
        )
        .run(itemId, annotatorId, answer, s.swapped, reason, Date.now());
    })();
  }

  /** Removes the annotator's latest answer; its item becomes their open assignment again. Returns its id. */
  undo(annotatorId: number): number | undefined {
    return this.db.transaction(() => {
      const last = this.db
        .prepare('SELECT id, item_id FROM labels WHERE annotator_id = ? ORDER BY id DESC LIMIT 1')
        .get(annotatorId) as { id: number; item_id: number } | undefined;
      if (!last) return undefined;
      this.db.prepare('DELETE FROM labels WHERE id = ?').run(last.id);
      this.db
        .prepare('UPDATE assignments SET assigned_at = 0 WHERE item_id = ? AND annotator_id = ?')
        .run(last.item_id, annotatorId); // first in line
      return last.item_id;
    })();
  }

  progress(annotatorId: number): Progress {
    const k = this.labelsPerItem;
    const total = (this.db.prepare('SELECT COUNT(*) AS n FROM items').get() as { n: number }).n;
    const done = (
      this.db.prepare('SELECT COUNT(*) AS n FROM labels WHERE annotator_id = ?').get(annotatorId) as { n: number }
    ).n;
    const remaining = (
      this.db
        .prepare(
          `SELECT COUNT(*) AS n FROM items i WHERE NOT EXISTS (SELECT 1 FROM labels l WHERE l.item_id = i.id AND l.annotator_id = @me)
             AND (SELECT COUNT(*) FROM labels l WHERE l.item_id = i.id AND l.answer != 'skip') < @k`,
        )
        .get({ me: annotatorId, k }) as { n: number }
    ).n;
    const merged = (col: string) => `CASE WHEN ${col} IN ('tie_good','tie_bad') THEN 'tie' ELSE ${col} END`;
    const cmp = this.db
      .prepare(
        `SELECT COUNT(*) AS n, SUM(${merged('m.answer')} = ${merged('o.answer')}) AS same FROM labels m JOIN labels o
           ON o.item_id = m.item_id AND o.annotator_id != m.annotator_id
         WHERE m.annotator_id = ? AND m.answer != 'skip' AND o.answer != 'skip'`,
      )
      .get(annotatorId) as { n: number; same: number | null };
    return { done, remaining, total, agreement: cmp.n ? (cmp.same ?? 0) / cmp.n : null };
  }

  /** Every answer, in the order given. */
  labels(): LabelRow[] {
    return (
      this.db
        .prepare(
          'SELECT l.item_id, a.name, l.answer, l.swapped, l.reason FROM labels l JOIN annotators a ON a.id = l.annotator_id ORDER BY l.id',
        )
        .all() as Array<{ item_id: number; name: string; answer: Answer; swapped: number; reason: string }>
    ).map((r) => ({
      itemId: r.item_id,
      annotator: r.name,
      answer: r.answer,
      swapped: r.swapped === 1,
      reason: r.reason,
    }));
  }

  items(): Array<{ id: number; prompt: Prompt; promptKey: string; a: string; b: string }> {
    return (
      this.db
        .prepare('SELECT id, prompt_json, prompt_key, response_a, response_b FROM items ORDER BY id')
        .all() as Array<{ id: number; prompt_json: string; prompt_key: string; response_a: string; response_b: string }>
    ).map((r) => ({
      id: r.id,
      prompt: JSON.parse(r.prompt_json) as Prompt,
      promptKey: r.prompt_key,
      a: r.response_a,
      b: r.response_b,
    }));
  }
}
